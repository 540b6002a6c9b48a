"""An engine that answers from a script instead of a model, for unit tests and overhead benchmarks.

It speaks real harmony: completions are encoded with the same vocabulary the model uses, so
the parser sees exactly the token streams vLLM would return.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from functools import lru_cache
from typing import Any

from batch.engine.base import (
    FLOOR,
    Completion,
    Finished,
    GenerationRequest,
    Keyed,
    SamplingSettings,
)

Responder = Callable[[GenerationRequest], "str | Completion"]


@lru_cache(maxsize=4096)
def _encoded(text: str) -> tuple[int, ...]:
    # Encoding with special tokens allowed is ~30x slower than plain text: scripted answers
    # repeat, so encode each once (this engine also measures the harness overhead).
    from batch.vocab import load_encoding

    return tuple(load_encoding().encode(text, allowed_special="all"))


def harmony_completion(
    final: str | None,
    analysis: str | None = "Checked the content against the policy.",
    *,
    finish_reason: str = "stop",
    max_tokens: int | None = None,
) -> Completion:
    """Encode an assistant turn (analysis, then final) as the model would emit it."""
    messages = []
    if analysis is not None:
        messages.append(f"<|channel|>analysis<|message|>{analysis}<|end|>")
    if final is not None:
        messages.append(f"<|channel|>final<|message|>{final}<|return|>")
    text = "<|start|>assistant".join(messages)
    tokens = list(_encoded(text))
    if max_tokens is not None and len(tokens) > max_tokens:
        return Completion(tokens[:max_tokens], "length")
    return Completion(tokens, finish_reason)


@lru_cache(maxsize=4096)
def _scripted(text: str, max_tokens: int, score_tokens: tuple[int, ...], sure: float) -> Completion:
    # The same few answers come back again and again: build each once, with its scores, so
    # a benchmark with this engine measures the job, not the engine.
    completion = harmony_completion(text, max_tokens=max_tokens)
    tokens = tuple(completion.token_ids)
    scores = _scores(tokens, score_tokens, sure) if score_tokens else None
    return replace(completion, token_ids=tokens, score_logprobs=scores)


@lru_cache(maxsize=4096)
def _scores(
    token_ids: tuple[int, ...], score_tokens: tuple[int, ...], sure: float
) -> dict[int, dict[int, float]]:
    """Every score token sampled gets probability ``sure``, each other one ``1 - sure``."""
    kept = {}
    for position, token in enumerate(token_ids):
        if token in score_tokens:
            rest = math.log(max(1e-12, 1 - sure))  # each other score token (not summed)
            kept[position] = {t: rest for t in score_tokens} | {token: math.log(sure)}
            kept[position][FLOOR] = min(kept[position].values())
    return kept


class ScriptedEngine:
    """Returns whatever ``respond`` says for each request and records every step.

    It streams like vLLM: each step answers the oldest ``per_step`` requests in flight (all of
    them by default) through :meth:`generate`, which tests override to delay or fail; a step
    that raises is retried one request at a time, so only the failing request gets the error.
    """

    name = "scripted"

    def __init__(
        self,
        respond: Responder | None = None,
        record: bool = True,
        per_step: int | None = None,
        slots: int | None = None,
        confidence: float | Callable[[GenerationRequest], float] = 0.9,
    ) -> None:
        self._respond = respond or (lambda request: "0")
        self.record = record  # keep every request (tests); off for benchmarks, to keep memory flat
        self.per_step = per_step
        self.slots = slots
        # The probability the "model" gives each score token it samples (the verdict digit);
        # every other score token gets 1 - confidence, so a digit's pair scores exactly that.
        self.confidence = confidence
        self.calls: list[list[GenerationRequest]] = []
        self.max_in_flight_seen = 0
        self._seen = 0

    @property
    def requests_seen(self) -> int:
        return self._seen

    def generate(
        self, requests: Sequence[GenerationRequest], sampling: SamplingSettings
    ) -> list[Completion]:
        self._seen += len(requests)
        if self.record:
            self.calls.append(list(requests))
        out = []
        for request in requests:
            answer = self._respond(request)
            wanted = request.score_tokens
            sure = 0.0
            if wanted:
                sure = self.confidence(request) if callable(self.confidence) else self.confidence
            if isinstance(answer, str):
                answer = _scripted(answer, sampling.max_tokens, wanted, sure)
            elif wanted and answer.score_logprobs is None:
                scores = _scores(tuple(answer.token_ids), wanted, sure)
                answer = replace(answer, score_logprobs=scores)
            out.append(answer)
        return out

    def stream(
        self, requests: Iterable[Keyed], sampling: SamplingSettings, max_in_flight: int
    ) -> Iterator[Finished]:
        pending = iter(requests)
        window: list[Keyed] = []
        while True:
            while len(window) < max_in_flight and (item := next(pending, None)) is not None:
                window.append(item)
            if not window:
                return
            self.max_in_flight_seen = max(self.max_in_flight_seen, len(window))
            size = self.per_step or len(window)
            step, window = window[:size], window[size:]
            yield from self._step(step, sampling)

    def _step(self, step: list[Keyed], sampling: SamplingSettings) -> Iterator[Finished]:
        try:
            results = list(self.generate([request for _, request in step], sampling))
        except Exception as exc:  # noqa: BLE001 - isolate the failing request, as vLLM's does
            if len(step) == 1:
                yield step[0][0], f"{type(exc).__name__}: {exc}"
                return
            for item in step:
                yield from self._step([item], sampling)
            return
        if len(results) != len(step):
            raise RuntimeError(f"{len(results)} completions for {len(step)} requests")
        yield from zip([key for key, _ in step], results, strict=True)

    def describe(self) -> dict[str, Any]:
        return {"engine": self.name}
