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
    """One group's plan; ``results[i]`` answers ``leaders[i]`` once the engine returns it.

    Each chunk of the group commits on its own, as soon as every request its rows wait on is
    answered (``pending[c]`` counts them, with its held candidates), so the first rows are
    written when the first chunk is done, not when the whole group is.
    """

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
    score_tokens: tuple[int, ...] = ()  # asked of the engine for a score column
    unanswered: int = 0  # requests without their result yet
    committed: set[int] = field(default_factory=set)  # chunk indexes written
    pending: list[int] = field(default_factory=list)  # per chunk: what it still waits on
    dependents: list[set[int]] = field(default_factory=list)  # per request: chunks waiting

    def __post_init__(self) -> None:
        self.results = self.results or [None] * len(self.leaders)
        self.unanswered = sum(result is None for result in self.results)
        self.pending = [0] * len(self.chunks)
        self.dependents = [set() for _ in self.leaders]
        self._ready = set(range(len(self.chunks)))  # pending 0, not committed
        self._track(self.decisions, self.held)

    def _wait(self, chunk: int, change: int) -> None:
        self.pending[chunk] += change
        if self.pending[chunk] or chunk in self.committed:
            self._ready.discard(chunk)
        else:
            self._ready.add(chunk)

    def chunk_index(self, chunk: Chunk) -> int:
        """The index of a chunk in ``chunks``."""
        if not hasattr(self, "_where"):
            self._where = {id(c): index for index, c in enumerate(self.chunks)}
        return self._where[id(chunk)]

    def chunk_of(self, task: int) -> int:
        """The index, in ``chunks``, of a ``todo`` task's chunk."""
        return self.chunk_index(self.todo[task].chunk)

    def _track(self, decisions: Sequence[Decision], held: Sequence[Candidate]) -> None:
        for decision in decisions:
            if decision.group is None or self.results[decision.group] is not None:
                continue
            chunk = self.chunk_of(decision.task)
            if chunk not in self.dependents[decision.group]:
                self.dependents[decision.group].add(chunk)
                self._wait(chunk, 1)
        for candidate in held:
            self._wait(self.chunk_of(candidate.task), 1)

    @property
    def rows(self) -> int:
        return sum(chunk.size for chunk in self.chunks)

    @property
    def done(self) -> bool:
        return len(self.committed) == len(self.chunks)

    def ready(self) -> list[int]:
        """Chunks that wait on nothing and are not written yet."""
        self._ready -= self.committed
        return sorted(self._ready)

    def answer(self, index: int, result: Completion | str) -> None:
        if self.results[index] is None:
            self.unanswered -= 1
            for chunk in self.dependents[index]:
                self._wait(chunk, -1)
        self.results[index] = result

    def resolve_held(self, decisions: Sequence[Decision], leaders: Sequence[Candidate]) -> None:
        """Held candidates decided: by earlier labels, or by ``leaders`` asked now."""
        for candidate in self.held:
            self._wait(self.chunk_of(candidate.task), -1)
        self.held, self.waits_for = [], set()
        self.leaders += leaders
        self.results += [None] * len(leaders)
        self.dependents += [set() for _ in leaders]
        self.unanswered += len(leaders)
        self.decisions += decisions
        self._track(decisions, ())

    def requests(self, start: int = 0) -> list[GenerationRequest]:
        return requests_for(self.leaders[start:], self.score_tokens)
