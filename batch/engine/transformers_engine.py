"""Hugging Face Transformers in this process: token ids in and out, batched, on a GPU or a CPU,
no network. For machines without vLLM (a consumer GPU, a laptop): slower than vLLM, and not
exact in one respect: Transformers takes one random generator per batch (or per manager), so
at a temperature above 0 a row's sample depends on what ran beside it (greedy answers do not).
torch and transformers are imported only when the engine is built (the ``transformers`` extra).

Two ways to batch (``TransformersConfig.batching``):

- ``static`` (the default, and what ``auto`` picks): batches of ``batch_size`` requests,
  left-padded, each ending when every row hit a stop token or ``max_tokens``; the score's
  log-probabilities come from the logits as they are produced (the top 20 of each step, kept
  per row), as from vLLM;
- ``continuous`` (Transformers 5.x, ``model.init_continuous_batching``): a paged KV cache; a
  request enters as soon as another finishes and comes back when it is done, like vLLM.
  Transformers returns only the sampled token's log-probability there, so the score weighs
  the sampled verdict against everything else: ``P(other) = 1 - P(sampled)`` (exact when the
  two digits hold all the mass, as they do at a verdict of a trained model).

Static is the default because it was faster wherever it was measured. On an AMD EPYC (2
cores, transformers 5.19) continuous ran 24 prompts of 688 tokens in 30.5 s against 4.8 s, and
the job's 160-row check in 267 s against 33 s. On one NVIDIA H200 (transformers 5.17, torch
2.11; ``scripts/transformers_gpu_check.py``, the 12.9M-parameter demo model, 2,000 greedy
requests) static took 24.8 / 7.9 / 3.9 s at ``batch_size`` 16 / 64 / 256 and continuous
33.1 / 23.7 s at 16 / 64 (the same 2,000 labels at 64); at 256 continuous ran out of GPU
memory in its prefill (every request came back as an engine error). With the real 20b/120b
weights, not measured here.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
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

PAD = 199999  # <|endoftext|>: never in a prompt this job renders, masked out anyway
BATCHING = ("auto", "continuous", "static")


@dataclass
class TransformersConfig:
    model: str
    max_model_len: int | None = None
    seed: int = 0
    batch_size: int = 16
    device: str | None = None  # default: cuda when there is one, else cpu
    extra: dict[str, Any] = field(default_factory=dict)  # more from_pretrained arguments
    batching: str = "static"  # or "continuous"; "auto" is static (see the module's docstring)

    def __post_init__(self) -> None:
        if self.batching not in BATCHING:
            raise ValueError(f"batching must be one of {BATCHING}, got {self.batching!r}")


class _TopK:
    """A logits processor that keeps each step's top log-probabilities, per row."""

    def __init__(self) -> None:
        self.steps: list[tuple[Any, Any]] = []

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        values, ids = torch.log_softmax(scores.float(), dim=-1).topk(SCORE_TOP_K, dim=-1)
        self.steps.append((values.cpu(), ids.cpu()))
        return scores


class TransformersEngine:
    name = "transformers"

    def __init__(self, config: TransformersConfig, stop_token_ids: Sequence[int]) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        self.config = config
        self.stop_token_ids = list(stop_token_ids)
        self.device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        started = time.perf_counter()
        self.model = AutoModelForCausalLM.from_pretrained(
            config.model, local_files_only=True, dtype="auto", **config.extra
        ).to(self.device)
        self.model.eval()
        self.load_seconds = time.perf_counter() - started
        limit = getattr(self.model.config, "max_position_embeddings", None)
        self.max_model_len = config.max_model_len or limit
        self.slots = config.batch_size
        continuous = hasattr(self.model, "init_continuous_batching")
        if config.batching == "continuous" and not continuous:
            raise RuntimeError("this Transformers has no continuous batching (5.x has it)")
        # "auto": static, faster than continuous on a CPU and on an H200 (module docstring)
        self.batching = "static" if config.batching == "auto" else config.batching

    def stream(
        self, requests: Iterable[Keyed], sampling: SamplingSettings, max_in_flight: int
    ) -> Iterator[Finished]:
        """Completions as they finish (continuous) or as their batch ends (static)."""
        if self.batching == "continuous":
            from batch.engine.transformers_continuous import stream_continuous

            return stream_continuous(self, requests, sampling, max_in_flight)
        return self._stream_static(requests, sampling, max_in_flight)

    def generation_settings(self, sampling: SamplingSettings) -> dict[str, Any]:
        """The generation settings both ways of batching pass to Transformers."""
        sample = sampling.temperature > 0
        return {
            "max_new_tokens": sampling.max_tokens,
            "do_sample": sample,
            "temperature": sampling.temperature if sample else None,
            "top_p": sampling.top_p if sample else None,
            "eos_token_id": self.stop_token_ids,
            "pad_token_id": PAD,
        }

    def _stream_static(
        self, requests: Iterable[Keyed], sampling: SamplingSettings, max_in_flight: int
    ) -> Iterator[Finished]:
        """Batches of at most ``batch_size`` requests, each answered when its batch ends."""
        pending = iter(requests)
        size = max(1, min(self.config.batch_size, max_in_flight))
        while True:
            batch = [item for _, item in zip(range(size), pending, strict=False)]
            if not batch:
                return
            try:
                results: list[Completion | str] = list(self._generate(batch, sampling))
            except Exception as exc:  # noqa: BLE001 - then each alone: only the bad one fails
                results = []
                for item in batch:
                    try:
                        results += self._generate([item], sampling)
                    except Exception as alone:  # noqa: BLE001 - this request's own failure
                        results.append(f"{type(alone).__name__}: {alone}")
                del exc
            yield from zip([key for key, _ in batch], results, strict=True)

    def _generate(self, batch: list[Keyed], sampling: SamplingSettings) -> list[Completion]:
        import torch
        from transformers import LogitsProcessorList

        prompts = [list(request.prompt_token_ids) for _, request in batch]
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), PAD, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, prompt in enumerate(prompts):
            ids[row, width - len(prompt) :] = torch.tensor(prompt)
            mask[row, width - len(prompt) :] = 1
        torch.manual_seed(batch[0][1].seed)  # one generator per batch (see the module's note)
        topk = _TopK()
        with torch.no_grad():
            out = self.model.generate(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                logits_processor=LogitsProcessorList([topk]),
                **self.generation_settings(sampling),
            )
        return [self._completion(out[row, width:].tolist(), row, batch[row][1], topk)
                for row in range(len(batch))]  # fmt: skip

    def _completion(
        self, generated: list[int], row: int, request: GenerationRequest, topk: _TopK
    ) -> Completion:
        stop = next((i for i, t in enumerate(generated) if t in self.stop_token_ids), None)
        tokens = generated if stop is None else generated[: stop + 1]
        scores = None
        if request.score_tokens:
            top = [dict(zip(ids[row].tolist(), values[row].tolist(), strict=True))
                   for values, ids in topk.steps[: len(tokens)]]  # fmt: skip
            scores = score_logprobs_at(tokens, top, request.score_tokens)
        return Completion(tokens, "length" if stop is None else "stop", 0, scores)

    def describe(self) -> dict[str, Any]:
        from batch.engine.vllm_engine import package_version

        return {
            "engine": self.name,
            "config": asdict(self.config),
            "device": self.device,
            "transformers": package_version("transformers"),
            "torch": package_version("torch"),
            "max_model_len": self.max_model_len,
            "batching": self.batching,
            "score": (
                "the sampled verdict's probability against the rest (continuous batching "
                "returns no top-k)"
                if self.batching == "continuous"
                else "from the top-20 log-probabilities of each step"
            ),
            "load_seconds": round(self.load_seconds, 3),
            "seeds": "one random generator per batch (greedy answers do not depend on it)",
        }


@dataclass
class TransformersEngineFactory:
    config: TransformersConfig
    stop_token_ids: list[int]

    def __call__(self) -> TransformersEngine:
        return TransformersEngine(self.config, self.stop_token_ids)
