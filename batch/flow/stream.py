"""Many groups in the engine at once: the engine is fed continuously, each group commits alone.

Groups are planned only when the engine has room for more requests (``max_in_flight``), so
memory stays bounded by what is in flight; each chunk of a group commits as soon as the last
request its rows wait on is answered, whatever the other chunks and groups are doing (chunks
ready within ``COMMIT_GAP_SECONDS`` of the last commit wait for the next one, so a burst of
answers is one commit, not one per chunk), and a kill loses at most the chunks not yet
written. Work
identical to a request an open group already sent (same policy, settings and content) is not
sent twice: it waits for that group's commit and takes its label, as it would have in a later
batch (``Labeller.take_held``).
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from batch.engine.base import Completion, Keyed
from batch.flow.chunks import Chunk
from batch.flow.labeller import Labeller
from batch.flow.prepared import HoldKey, PreparedGroup
from batch.flow.stats import RunStats

T = TypeVar("T")
COMMIT_GAP_SECONDS = 1.0  # least time between two commits of part of a group


@dataclass
class _Open(Generic[T]):
    group: PreparedGroup
    payload: T
    credited: int = 0  # rows already shown on the progress bar


class GroupStream(Generic[T]):
    """Streams groups of chunks through one labeller's engine; yields each commit's counts."""

    def __init__(
        self,
        labeller: Labeller,
        max_in_flight: int,
        on_rows: Callable[[int], None] | None = None,
    ) -> None:
        self.labeller = labeller
        self.max_in_flight = max(1, max_in_flight)
        self.on_rows = on_rows or (lambda rows: None)
        self.open: dict[int, _Open[T]] = {}  # by group number, in the order groups were read
        self.work: dict[HoldKey, int] = {}  # work an open group asked for -> its number
        self.keys: dict[int, tuple[int, int]] = {}  # request key -> (group, leader index)
        self.queued: deque[Keyed] = deque()
        self.ready: list[tuple[RunStats, T | None]] = []
        self.engine_seconds = 0.0
        self._attributed = 0.0
        self._our_seconds = 0.0  # time spent planning and committing inside the engine's pull
        self._last_commit = -float("inf")
        self._deferred = False  # a ready chunk waits for the gap after the last commit
        self._numbers = itertools.count()
        self._ids = itertools.count()

    def run(
        self, groups: Iterable[tuple[Sequence[Chunk], T]]
    ) -> Iterator[tuple[RunStats, T | None]]:
        """Label every group; yield ``(counts, payload)`` as each chunk commits, the group's
        payload with its last chunk (None before)."""
        requests: Iterator[Keyed] = self._requests(iter(groups))
        while True:
            yield from self._pump(requests)
            yield from self._drain()
            if not self.open:
                return
            if not self.queued:  # cannot happen: every open group is answered or has asks
                raise RuntimeError(f"{len(self.open)} groups left open with nothing to ask")
            requests = self._requests(iter(()))

    def _pump(self, requests: Iterator[Keyed]) -> Iterator[tuple[RunStats, T | None]]:
        sampling = self.labeller.config.sampling
        answers = self.labeller.engine.stream(requests, sampling, self.max_in_flight)
        while True:
            started, self._our_seconds = time.perf_counter(), 0.0
            item = next(answers, None)
            self.engine_seconds += time.perf_counter() - started - self._our_seconds
            if item is None:
                return
            self._answer(*item)
            yield from self._drain()

    def _requests(self, groups: Iterator[tuple[Sequence[Chunk], T]]) -> Iterator[Keyed]:
        """What the engine pulls: queued requests first, then the next group's, planned now."""
        while True:
            while self.queued:
                yield self.queued.popleft()
            started = time.perf_counter()
            group = next(groups, None)
            if group is not None:
                self._open(*group)
            self._our_seconds += time.perf_counter() - started
            if group is None and not self.queued:
                return

    def _open(self, chunks: Sequence[Chunk], payload: T) -> None:
        number = next(self._numbers)
        group = self.labeller.prepare(chunks, self.work)
        self.open[number] = _Open(group, payload)
        self._ask(number, 0)
        self._advance()

    def _ask(self, number: int, start: int) -> None:
        """Queue a group's requests from ``start`` on, and note the work they stand for."""
        group = self.open[number].group
        for key in self.labeller.hold_keys(group, start):
            self.work.setdefault(key, number)
        for index, request in enumerate(group.requests(start), start):
            key = next(self._ids)
            self.keys[key] = (number, index)
            self.queued.append((key, request))

    def _answer(self, key: int, result: Completion | str) -> None:
        number, index = self.keys.pop(key)
        entry = self.open[number]
        group = entry.group
        group.answer(index, result)
        if group.ready() or self._deferred:
            self._advance()
        if number not in self.open or not group.unanswered:
            return
        answered = len(group.results) - group.unanswered
        due = group.rows * answered // len(group.results) - entry.credited
        if due > 0:  # the rest is shown as the group's chunks commit
            entry.credited += due
            self.on_rows(due)

    def _advance(self) -> None:
        """Commit every chunk that waits on nothing; give held work its labels once the
        groups it waits on are written; close groups written whole. Until nothing moves."""
        progress, self._deferred = True, False
        while progress:
            progress = False
            for number, entry in list(self.open.items()):
                group = entry.group
                if group.held and not any(w in self.open for w in group.waits_for):
                    start = self.labeller.take_held(group)
                    if start < len(group.leaders):  # held work whose label did not come: ask
                        self._ask(number, start)
                ready = group.ready()
                recent = time.monotonic() - self._last_commit < COMMIT_GAP_SECONDS
                if ready and (len(ready) + len(group.committed) == len(group.chunks) or not recent):
                    self._commit(entry, ready)  # one upsert for every chunk ready now
                elif ready:
                    self._deferred = True  # committed at the first answer after the gap
                if group.done:
                    self._close(number, entry)
                    progress = True

    def _commit(self, entry: _Open[T], chunks: list[int]) -> None:
        group = entry.group
        group.generate_seconds = self.engine_seconds - self._attributed
        self._attributed = self.engine_seconds
        stats = self.labeller.finish(group, chunks)
        self._last_commit = time.monotonic()
        # last chunks: whatever the bar has not shown of the group; before, the chunks' rows
        rows = (
            group.rows - entry.credited if group.done else sum(group.chunks[c].size for c in chunks)
        )
        shown = min(rows, group.rows - entry.credited)
        entry.credited += shown
        self.on_rows(shown)
        self.ready.append((stats, entry.payload if group.done else None))

    def _close(self, number: int, entry: _Open[T]) -> None:
        del self.open[number]
        for key in [k for k, owner in self.work.items() if owner == number]:
            del self.work[key]

    def _drain(self) -> Iterator[tuple[RunStats, T | None]]:
        ready, self.ready = self.ready, []
        yield from ready
