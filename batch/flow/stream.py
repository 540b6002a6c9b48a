"""Many groups in the engine at once: the engine is fed continuously, answers are written as
they come.

Groups are planned only when the engine has room for more requests (``max_in_flight``), so
memory stays bounded by what is in flight. Every decision is written as soon as the answer it
waits on is there: the ready decisions of all open groups go into one upsert, the first at the
first answer, the next ones when the commit gap has passed (it grows with the run, from
``COMMIT_GAP_SECONDS`` to ``MAX_COMMIT_GAP_SECONDS``, so a long run makes few, large commits)
or when enough rows wait (``ready_limit``), so a kill loses at most the answers of one gap
and the requests in flight. Work identical to a request an open group already sent (same
policy, settings and content) is not sent twice: it waits for that group to be written and
takes its label, as it would have in a later batch (``Labeller.take_held``).

An engine that breaks the streaming contract costs no committed work: a request it never
answers gets ``engine_error`` rows, an answer to a request it was never given, or a second
answer, is an :class:`EngineContractError` raised after what was ready has been written.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from batch.engine.base import Completion, Keyed
from batch.errors import SafeguardError
from batch.flow.chunks import Chunk
from batch.flow.labeller import Labeller
from batch.flow.prepared import HoldKey, PreparedGroup
from batch.flow.stats import RunStats

T = TypeVar("T")
COMMIT_GAP_SECONDS = 1.0  # least time between two commits
MAX_COMMIT_GAP_SECONDS = 30.0  # most time answers wait for a commit
GAP_SHARE = 0.05  # the gap as a share of the time the stream has run, between the two
NO_ANSWER = "engine_error: the engine returned no answer for this request"


class EngineContractError(SafeguardError):
    """The engine answered a request it was not given, or one request twice (exit 4)."""

    exit_code = 4


@dataclass
class _Open(Generic[T]):
    group: PreparedGroup
    payload: T
    credited: int = 0  # rows already shown on the progress bar
    asked: list[HoldKey] = field(default_factory=list)  # work it registered in ``work``


class GroupStream(Generic[T]):
    """Streams groups of chunks through one labeller's engine; yields each commit's counts."""

    def __init__(
        self,
        labeller: Labeller,
        max_in_flight: int,
        on_rows: Callable[[int], None] | None = None,
        ready_limit: int | None = None,
    ) -> None:
        self.labeller = labeller
        self.max_in_flight = max(1, max_in_flight)
        self.on_rows = on_rows or (lambda rows: None)
        # Rows waiting for a commit that make one due whatever the gap: bounds memory.
        self.ready_limit = ready_limit or 4 * max(1, labeller.config.batch_size)
        self.open: dict[int, _Open[T]] = {}  # by group number, in the order groups were read
        self.work: dict[HoldKey, int] = {}  # work an open group asked for -> its number
        self.keys: dict[int, tuple[int, int]] = {}  # request key -> (group, leader index)
        self.queued: deque[tuple[int, int, int]] = deque()  # (key, group, leader index)
        self.sent: set[int] = set()  # keys the engine has taken and not answered
        self.ready: list[tuple[RunStats, T | None]] = []
        self.engine_seconds = 0.0
        self._attributed = 0.0
        self._our_seconds = 0.0  # time spent planning and committing inside the engine's pull
        self._started = time.monotonic()
        self._last_commit = -float("inf")
        self._waiting = 0  # ready decisions not committed, over all open groups
        self._numbers = itertools.count()
        self._ids = itertools.count()
        self._moves = 0  # answers and requests taken: a round of the engine without any fails

    def run(
        self, groups: Iterable[tuple[Sequence[Chunk], T]]
    ) -> Iterator[tuple[RunStats, T | None]]:
        """Label every group; yield ``(counts, payload)`` for each commit (payload None) and
        for each group once it is written whole (its payload)."""
        requests: Iterator[Keyed] = self._requests(iter(groups))
        while True:
            moved = self._moves
            try:
                yield from self._pump(requests)
            except Exception:
                with contextlib.suppress(Exception):
                    self._flush()  # what is answered is written before the error goes on
                yield from self._drain()
                raise
            self._unanswered()
            self._flush()
            yield from self._drain()
            if not self.open:
                return
            if not self.queued or self._moves == moved:
                raise EngineContractError(
                    f"the engine stopped taking requests with {len(self.queued)} still to "
                    "send; what was answered is written, rerun to resume"
                )
            requests = self._requests(iter(()))

    def _pump(self, requests: Iterator[Keyed]) -> Iterator[tuple[RunStats, T | None]]:
        sampling = self.labeller.config.sampling
        answers = self.labeller.engine.stream(requests, sampling, self.max_in_flight)
        while True:
            started, self._our_seconds = time.perf_counter(), 0.0
            try:
                item = next(answers, None)
            except SafeguardError:
                raise
            except Exception as exc:  # the engine itself failed, not a request
                raise EngineContractError(
                    f"the engine failed: {type(exc).__name__}: {exc}; what was answered is "
                    "written, rerun to resume"
                ) from exc
            self.engine_seconds += time.perf_counter() - started - self._our_seconds
            if item is None:
                return
            self._moves += 1
            self._answer(*item)
            yield from self._drain()

    def _requests(self, groups: Iterator[tuple[Sequence[Chunk], T]]) -> Iterator[Keyed]:
        """What the engine pulls: queued requests first, then the next group's, planned now.
        A request's prompt is joined only when the engine takes it."""
        while True:
            while self.queued:
                key, number, index = self.queued.popleft()
                self.sent.add(key)
                self._moves += 1
                yield key, self.open[number].group.request(index)
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
        self._waiting += len(group.ready)
        self._ask(number, 0)
        self._advance()

    def _ask(self, number: int, start: int) -> None:
        """Queue a group's requests from ``start`` on, and note the work they stand for."""
        entry = self.open[number]
        group = entry.group
        for key in self.labeller.hold_keys(group, start):
            if self.work.setdefault(key, number) == number:
                entry.asked.append(key)
        for index in range(start, len(group.leaders)):
            key = next(self._ids)
            self.keys[key] = (number, index)
            self.queued.append((key, number, index))

    def _answer(self, key, result: Completion | str) -> None:
        where = self.keys.pop(key, None)
        if where is None:
            raise EngineContractError(
                f"the engine answered a request it was not given, or one request twice "
                f"(key {key!r}); what was answered before is written"
            )
        self.sent.discard(key)
        number, index = where
        entry = self.open[number]
        group = entry.group
        before = len(group.ready)
        group.answer(index, result)
        self._waiting += len(group.ready) - before
        if self._due():  # groups change only as they are written: nothing to do before
            self._advance()
        if number not in self.open or not group.unanswered:
            return
        answered = len(group.results) - group.unanswered
        due = group.rows * answered // len(group.results) - entry.credited
        if due > 0:  # the rest is shown as the group closes
            entry.credited += due
            self.on_rows(due)

    def _unanswered(self) -> None:
        """Requests the engine took but never answered: ``engine_error``, retried next run."""
        for key in sorted(self.sent):
            number, index = self.keys.pop(key)
            group = self.open[number].group
            before = len(group.ready)
            group.answer(index, NO_ANSWER)
            self._waiting += len(group.ready) - before
        self.sent.clear()

    def _due(self) -> bool:
        if not self._waiting:
            return False
        now = time.monotonic()
        gap = GAP_SHARE * (now - self._started)
        gap = min(MAX_COMMIT_GAP_SECONDS, max(COMMIT_GAP_SECONDS, gap))
        return now - self._last_commit >= gap or self._waiting >= self.ready_limit

    def _advance(self, final: bool = False) -> None:
        """Give held work its labels once the groups it waits on are written; commit what is
        ready when a commit is due (``final``: now); close groups written whole. Until
        nothing moves."""
        moved = True
        while moved:
            moved = False
            for number, entry in list(self.open.items()):
                group = entry.group
                if group.held and not any(w in self.open for w in group.waits_for):
                    before = len(group.ready)
                    start = self.labeller.take_held(group)
                    self._waiting += len(group.ready) - before
                    if start < len(group.leaders):  # held work whose label did not come: ask
                        self._ask(number, start)
            if self._waiting and (final or self._due()):
                self._commit()
            for number, entry in list(self.open.items()):
                if entry.group.done:
                    self._close(number, entry)
                    moved = True

    def _flush(self) -> None:
        self._advance(final=True)

    def _commit(self) -> None:
        """One upsert for every ready decision of every open group."""
        parts = [(e.group, e.group.take_ready()) for e in self.open.values() if e.group.ready]
        self._waiting = 0
        stats = self.labeller.commit(parts)
        stats.generate_seconds = self.engine_seconds - self._attributed
        self._attributed = self.engine_seconds
        self._last_commit = time.monotonic()
        self.ready.append((stats, None))

    def _close(self, number: int, entry: _Open[T]) -> None:
        del self.open[number]
        for key in entry.asked:
            if self.work.get(key) == number:
                del self.work[key]
        group = entry.group
        self.on_rows(group.rows - entry.credited)
        entry.credited = group.rows
        self.ready.append((self.labeller.group_stats(group), entry.payload))

    def _drain(self) -> Iterator[tuple[RunStats, T | None]]:
        ready, self.ready = self.ready, []
        yield from ready
