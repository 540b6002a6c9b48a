"""What the pipeline needs from an engine: token ids in, token ids and a finish reason out.

An engine *streams*: it pulls requests while fewer than ``max_in_flight`` are unfinished and
hands each completion back as soon as it finishes, so the job can write finished work and
send more while the rest runs (no batch waits for its slowest request).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from batch.errors import UsageError


@dataclass(frozen=True)
class SamplingSettings:
    """Generation settings that change a result; all of them enter the cache key and seed."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 1024

    def __post_init__(self) -> None:
        """Refuse settings no engine can use (NaN compares false with every bound)."""
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise UsageError(f"temperature must be a finite number >= 0, not {self.temperature}")
        if not (math.isfinite(self.top_p) and 0 < self.top_p <= 1):
            raise UsageError(f"top_p must be in (0, 1], not {self.top_p}")
        if not 1 <= self.max_tokens <= 2**31 - 1:
            raise UsageError(f"max_tokens must be from 1 to 2^31 - 1, not {self.max_tokens}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# Log-probabilities asked of the engine per generated token when a request wants a score
# (vLLM's default ceiling, ``max_logprobs``, is 20).
SCORE_TOP_K = 20
# The key, in a position's score log-probabilities, of the lowest top-k log-probability there:
# an upper bound for any token missing from the top k.
FLOOR = -1


@dataclass(slots=True)  # one per request: not frozen, whose init costs 5x (never mutated)
class GenerationRequest:
    """One prompt for the engine, with the seed that makes its sampling reproducible.

    ``score_tokens``: tokens whose log-probabilities the caller wants wherever the engine
    samples one of them (the verdict digits), read from the top-k at no extra generation.
    """

    prompt_token_ids: Sequence[int]
    seed: int
    score_tokens: tuple[int, ...] = ()


@dataclass(frozen=True)
class Completion:
    """The engine's answer to one request."""

    token_ids: Sequence[int]
    finish_reason: str | None  # "stop" or "length", as vLLM reports it
    num_cached_tokens: int = 0
    # position -> {score token: log-probability, FLOOR: lowest top-k log-probability}, at the
    # positions where a score token was sampled; None when no score was asked for.
    score_logprobs: dict[int, dict[int, float]] | None = None


def score_logprobs_at(
    token_ids: Sequence[int], top: Sequence[Any], score_tokens: Sequence[int]
) -> dict[int, dict[int, float]]:
    """Keep, of every position's top-k log-probabilities, only what a score needs: the score
    tokens where one was sampled, and the lowest top-k value there (an upper bound)."""
    wanted = set(score_tokens)
    kept: dict[int, dict[int, float]] = {}
    for position, (token, entry) in enumerate(zip(token_ids, top, strict=False)):
        if token not in wanted or not entry:
            continue
        values = {t: float(getattr(v, "logprob", v)) for t, v in entry.items()}
        kept[position] = {t: values[t] for t in wanted if t in values}
        kept[position][FLOOR] = min(values.values())
    return kept


Keyed = tuple[Hashable, GenerationRequest]
# A request's key and its completion, or a ``str``: the engine's error for that request alone.
Finished = tuple[Hashable, "Completion | str"]


class Engine(Protocol):
    """Runs token-id prompts, streaming: completions come back as they finish."""

    name: str
    slots: int | None  # sequences the engine runs at once (vLLM's max_num_seqs), if known

    def stream(
        self, requests: Iterable[Keyed], sampling: SamplingSettings, max_in_flight: int
    ) -> Iterator[Finished]:
        """Pull ``(key, request)`` pairs while fewer than ``max_in_flight`` are unfinished;
        yield ``(key, completion)`` as each finishes, in any order, until both the requests and
        the engine are exhausted. A request that fails alone yields its error message."""
        ...

    def describe(self) -> dict[str, Any]:
        """Engine settings and versions, for the run manifest."""
        ...


def generate(
    engine: Engine, requests: Sequence[GenerationRequest], sampling: SamplingSettings
) -> list[Completion | str]:
    """Every request at once, completions in request order (benchmarks, tests, Ray actors)."""
    out: list[Completion | str | None] = [None] * len(requests)
    for key, result in engine.stream(enumerate(requests), sampling, max(1, len(requests))):
        out[key] = result  # type: ignore[index]
    missing = [i for i, result in enumerate(out) if result is None]
    if missing:
        raise RuntimeError(f"engine returned no completion for {len(missing)} requests")
    return out  # type: ignore[return-value]
