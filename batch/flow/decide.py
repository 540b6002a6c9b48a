"""How each planned (row, policy) gets its label, decided once: by the planner, by an earlier
identical label from the label store, by the prefilter (``route``) or by a request
(``dedup``). Each step takes the items still open and returns the decisions it made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from batch.flow.plan import PlannedItem
from batch.flow.prompts import JobPrompts
from batch.flow.todo import ChunkTask
from batch.output.schema import ORIGIN_DUPLICATE, ORIGIN_PLANNER, ORIGIN_REUSED
from batch.output.store import LabelStore, WorkKey


@dataclass(slots=True)
class Candidate:
    """A planned item with a prompt, not decided yet."""

    task: int  # index into the group's tasks
    item: PlannedItem
    prefilter_score: float | None = None
    audit: bool = False  # below the prefilter's threshold, sent to the model to measure it


@dataclass(slots=True)
class Decision:
    """How one planned (row, policy) gets its label; ``origin`` is the output column."""

    task: int
    item: PlannedItem
    origin: str
    stored: dict[str, Any] | None = None  # the carried-over label columns, for reuse
    group: int | None = None  # index of the request that answers it
    prefilter_score: float | None = None
    audit: bool = False


def planner_decisions(
    plans: Sequence[Sequence[PlannedItem]],
) -> tuple[list[Decision], list[Candidate]]:
    """Items the planner decided (empty, too long) and the candidates for everything else."""
    decided, open_items = [], []
    for task, planned in enumerate(plans):
        for item in planned:
            if item.status is not None:
                decided.append(Decision(task, item, ORIGIN_PLANNER))
            else:
                open_items.append(Candidate(task, item))
    return decided, open_items


def carry_over(
    candidates: list[Candidate],
    tasks: Sequence[ChunkTask],
    store: LabelStore,
    prompts: JobPrompts,
    run_id: str,
) -> tuple[list[Decision], list[Candidate]]:
    """Earlier ``ok`` labels of identical work: ``reused`` from another run, ``duplicate``
    when this run wrote them (in an earlier batch)."""
    keys = {index: prompts.work_key(task.policy) for index, task in enumerate(tasks)}
    wanted: dict[WorkKey, set[str]] = {}
    for candidate in candidates:
        wanted.setdefault(keys[candidate.task], set()).add(candidate.item.content_sha256)
    fetched = {key: store.fetch(key, sorted(digests)) for key, digests in wanted.items()}
    decided, still_open = [], []
    for candidate in candidates:
        stored = fetched.get(keys[candidate.task], {}).get(candidate.item.content_sha256)
        if stored is None:
            still_open.append(candidate)
            continue
        origin = ORIGIN_DUPLICATE if stored["run_id"] == run_id else ORIGIN_REUSED
        decided.append(Decision(candidate.task, candidate.item, origin, stored=stored))
    return decided, still_open
