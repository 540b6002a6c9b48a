"""From engine options to a running engine: cheap checks first (vocabulary, model directory),
then vLLM, which takes seconds to minutes to load."""

from __future__ import annotations

import logging
import os
import warnings

from batch.engine.fingerprint import model_fingerprint
from batch.engine.vllm_engine import EngineConfig, VLLMEngine, VLLMEngineFactory
from batch.job.options import EngineOptions
from batch.job.pairs import parse_engine_args
from batch.vocab import check_vocab, load_encoding, stop_token_ids, use_vocab_dir


def quiet_engine_logs(verbose: bool) -> None:
    """vLLM's own log lines only with -v: a batch job's stderr should say what the job did."""
    if not verbose:
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"vllm\.")
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)


def prepare_engine(
    options: EngineOptions, max_num_seqs: int | None = None, seed: int = 0
) -> tuple[EngineConfig, str]:
    """Check the vocabulary and the model directory; the engine's config and the model's
    fingerprint. Raises a ``VocabError`` or ``ModelError`` (exit 2) before anything loads."""
    use_vocab_dir(options.vocab_dir)
    check_vocab()
    load_encoding()
    fingerprint = model_fingerprint(options.model)
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


def start_engine(config: EngineConfig) -> VLLMEngine:
    """Load vLLM in this process."""
    return VLLMEngine(config, stop_token_ids())


def engine_factory(config: EngineConfig) -> VLLMEngineFactory:
    """Something that loads vLLM where it is called: inside a Ray actor, on its GPUs."""
    return VLLMEngineFactory(config, stop_token_ids())
