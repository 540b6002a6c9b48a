"""What the pipeline needs from an engine: token ids in, token ids and a finish reason out."""

from __future__ import annotations

import math
from collections.abc import Sequence
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


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt for the engine, with the seed that makes its sampling reproducible."""

    prompt_token_ids: Sequence[int]
    seed: int


@dataclass(frozen=True)
class Completion:
    """The engine's answer to one request."""

    token_ids: Sequence[int]
    finish_reason: str | None  # "stop" or "length", as vLLM reports it
    num_cached_tokens: int = 0


class Engine(Protocol):
    """Generates completions for token-id prompts, in request order."""

    name: str

    def generate(
        self, requests: Sequence[GenerationRequest], sampling: SamplingSettings
    ) -> list[Completion]: ...

    def describe(self) -> dict[str, Any]:
        """Engine settings and versions, for the run manifest."""
        ...
