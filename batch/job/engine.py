"""From engine options to a running engine: cheap checks first (vocabulary, model directory,
the server's answer), then the engine, which can take seconds to minutes to load.

``--engine vllm`` (default) runs vLLM in this process; ``openai`` talks to an OpenAI-compatible
server; ``transformers`` runs Hugging Face Transformers in this process. Each engine's config
is a small record the Ray runner can ship to its actors.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import warnings
from typing import Any

from batch.engine.fingerprint import model_fingerprint
from batch.engine.openai_http import ServerConfig
from batch.engine.vllm_engine import EngineConfig
from batch.errors import UsageError
from batch.job.options import EngineOptions
from batch.job.pairs import parse_engine_args
from batch.vocab import check_vocab, load_encoding, stop_token_ids, use_vocab_dir

_SHA = re.compile(r"^[0-9a-f]{64}$")


def quiet_engine_logs(verbose: bool) -> None:
    """vLLM's own log lines only with -v: a batch job's stderr should say what the job did."""
    if not verbose:
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"vllm\.")
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)


def model_name(options: EngineOptions) -> str:
    """The ``model`` column: the model directory, or for a server its served name and URL."""
    if options.engine == "openai":
        return f"{options.served_model or 'served'}@{options.base_url}"
    return str(options.model)


def server_fingerprint(server: dict[str, Any]) -> str:
    """What a server says of the model it serves (id, root, owner, server version), hashed:
    the weights cannot be hashed from here; this proves the same name, not the same bytes."""
    said = {k: server.get(k) for k in ("model", "root", "owned_by", "version")}
    return hashlib.sha256(json.dumps(said, sort_keys=True).encode()).hexdigest()


def _server(options: EngineOptions) -> tuple[ServerConfig, str]:
    from batch.engine.openai_http import HttpClient
    from batch.engine.openai_probe import describe_server

    if not options.base_url:
        raise UsageError("--engine openai needs --base-url, e.g. http://127.0.0.1:8000/v1")
    if options.model_fingerprint and not _SHA.match(options.model_fingerprint):
        raise UsageError("--model-fingerprint must be 64 hexadecimal digits (a sha256)")
    config = ServerConfig(
        base_url=options.base_url,
        served_model=options.served_model,
        api_key_env=options.api_key_env,
        retry_seconds=options.retry_seconds,
        extra=parse_engine_args(options.engine_args),
    )
    if options.model_fingerprint:
        return config, options.model_fingerprint
    if options.model:
        return config, model_fingerprint(options.model)
    # asks the server what it serves (one clear error if it cannot say); the completion probe
    # runs once, when the engine starts
    return config, server_fingerprint(describe_server(HttpClient(config), config.served_model))


def prepare_engine(
    options: EngineOptions, max_num_seqs: int | None = None, seed: int = 0
) -> tuple[Any, str]:
    """Check the vocabulary and the model directory (or the server); the engine's config and
    the model's fingerprint. Raises a ``UsageError`` (exit 2) before anything loads."""
    use_vocab_dir(options.vocab_dir)
    check_vocab()
    load_encoding()
    if options.engine == "openai":
        return _server(options)
    if not options.model:
        raise UsageError(f"--engine {options.engine} needs --model DIR (a local model directory)")
    if options.model_fingerprint:
        raise UsageError("--model-fingerprint is for --engine openai: local weights are hashed")
    fingerprint = model_fingerprint(options.model)
    if options.engine == "transformers":
        from batch.engine.transformers_engine import TransformersConfig

        extra = parse_engine_args(options.engine_args)
        batching = str(extra.pop("batching", "static"))  # the rest go to from_pretrained
        try:
            local = TransformersConfig(
                options.model, options.max_model_len, seed, extra=extra, batching=batching
            )
        except ValueError as exc:
            raise UsageError(f"--engine-arg batching: {exc}") from None
        return local, fingerprint
    config = EngineConfig(
        model=options.model,
        tensor_parallel_size=options.tensor_parallel_size,
        gpu_memory_utilization=options.gpu_memory_utilization,
        max_model_len=options.max_model_len,
        max_num_seqs=max_num_seqs,
        seed=seed,
        extra=parse_engine_args(options.engine_args),
    )
    return config, fingerprint


def start_engine(config: Any) -> Any:
    """The engine for a config, in this process."""
    return engine_factory(config)()


def engine_factory(config: Any) -> Any:
    """Something that builds the engine where it is called: inside a Ray actor, on its GPUs."""
    if isinstance(config, ServerConfig):
        from batch.engine.openai_engine import OpenAIEngineFactory

        return OpenAIEngineFactory(config, stop_token_ids())
    if isinstance(config, EngineConfig):
        from batch.engine.vllm_engine import VLLMEngineFactory

        return VLLMEngineFactory(config, stop_token_ids())
    from batch.engine.transformers_engine import TransformersEngineFactory

    return TransformersEngineFactory(config, stop_token_ids())
