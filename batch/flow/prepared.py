"""A group of chunks between planning and commit: its decisions, its requests and their answers.

The streaming flow keeps several of these open at once; each commits as soon as every request
it sent has its answer and the earlier groups it waits on have committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from batch.engine.base import Completion, GenerationRequest
from batch.flow.chunks import Chunk
from batch.flow.decide import Candidate, Decision
from batch.flow.dedup import requests_for
from batch.flow.todo import ChunkTask
from batch.output.store import WorkKey

# What identical work is recognised by across groups: the work key and the content's hash.
HoldKey = tuple[WorkKey, str]


@dataclass
class PreparedGroup:
    """One group's plan; ``results[i]`` answers ``leaders[i]`` once the engine returns it."""

    chunks: Sequence[Chunk]
    tasks: list[ChunkTask]
    todo: list[ChunkTask]
    decisions: list[Decision]
    leaders: list[Candidate]
    results: list[Completion | str | None] = field(default_factory=list)
    # Candidates whose identical work an earlier open group has asked the engine for: they
    # take its label once that group commits (or are asked again if it did not get one).
    held: list[Candidate] = field(default_factory=list)
    waits_for: set[int] = field(default_factory=set)  # numbers of those earlier groups
    generate_seconds: float = 0.0
    unanswered: int = 0  # requests without their result yet

    def __post_init__(self) -> None:
        self.results = self.results or [None] * len(self.leaders)
        self.unanswered = sum(result is None for result in self.results)

    @property
    def rows(self) -> int:
        return sum(chunk.size for chunk in self.chunks)

    def answer(self, index: int, result: Completion | str) -> None:
        if self.results[index] is None:
            self.unanswered -= 1
        self.results[index] = result

    def ask_more(self, leaders: Sequence[Candidate]) -> None:
        self.leaders += leaders
        self.results += [None] * len(leaders)
        self.unanswered += len(leaders)

    def requests(self, start: int = 0) -> list[GenerationRequest]:
        return requests_for(self.leaders[start:])
