"""A group of chunks between planning and commit: its decisions, its requests and their answers.

The streaming flow keeps several of these open at once. A decision is *ready* as soon as what
it waits on is there (its request's answer; nothing, for a label decided without the model),
and ready decisions are committed together, whatever group or chunk they belong to: the first
rows are written when the first answers come, not when a chunk or a group is done.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from batch.engine.base import Completion, GenerationRequest
from batch.flow.chunks import Chunk
from batch.flow.decide import Candidate, Decision
from batch.flow.todo import ChunkTask

# What identical work is recognised by across the groups of a run: the policy (one work key
# per policy in a run) and the content's hash.
HoldKey = tuple[str, str | None]


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
    # take its label once that group is written (or are asked again if it did not get one).
    held: list[Candidate] = field(default_factory=list)
    waits_for: set[int] = field(default_factory=set)  # numbers of those earlier groups
    generate_seconds: float = 0.0
    score_tokens: tuple[int, ...] = ()  # asked of the engine for a score column
    unanswered: int = 0  # requests without their result yet
    written: int = 0  # decisions committed
    ready: list[int] = field(default_factory=list)  # decisions ready, not committed yet
    dependents: list[list[int]] = field(default_factory=list)  # per request: its decisions

    def __post_init__(self) -> None:
        self.results = self.results or [None] * len(self.leaders)
        self.unanswered = sum(result is None for result in self.results)
        self.dependents = [[] for _ in self.leaders]
        self.rows = sum(chunk.size for chunk in self.chunks)  # rows it labels
        self._track(0)

    def _track(self, start: int) -> None:
        """Decisions from ``start`` on: ready now, or waiting on their request."""
        for number in range(start, len(self.decisions)):
            request = self.decisions[number].group
            if request is None or self.results[request] is not None:
                self.ready.append(number)
            else:
                self.dependents[request].append(number)

    def chunk_index(self, chunk: Chunk) -> int:
        """The index of a chunk in ``chunks``."""
        if not hasattr(self, "_where"):
            self._where = {id(c): index for index, c in enumerate(self.chunks)}
        return self._where[id(chunk)]

    @property
    def done(self) -> bool:
        """Every decision written, none held."""
        return not self.held and self.written == len(self.decisions)

    def answer(self, index: int, result: Completion | str) -> bool:
        """Record a request's answer; False when it had one already (nothing changes)."""
        if self.results[index] is not None:
            return False
        self.unanswered -= 1
        self.results[index] = result
        self.ready += self.dependents[index]
        self.dependents[index] = []
        return True

    def take_ready(self) -> list[int]:
        """The ready decisions, handed over for one commit."""
        ready, self.ready = self.ready, []
        self.written += len(ready)
        return ready

    def resolve_held(self, decisions: Sequence[Decision], leaders: Sequence[Candidate]) -> None:
        """Held candidates decided: by earlier labels, or by ``leaders`` asked now."""
        self.held, self.waits_for = [], set()
        self.leaders += leaders
        self.results += [None] * len(leaders)
        self.dependents += [[] for _ in leaders]
        self.unanswered += len(leaders)
        start = len(self.decisions)
        self.decisions += decisions
        self._track(start)

    def request(self, index: int) -> GenerationRequest:
        """The engine's request for ``leaders[index]``, its prompt joined now."""
        item = self.leaders[index].item
        return GenerationRequest(item.prompt or [], item.seed or 0, self.score_tokens)

    def requests(self, start: int = 0) -> list[GenerationRequest]:
        return [self.request(index) for index in range(start, len(self.leaders))]
