"""The write stage: each task's rows (kept and new) as one atomic chunk file, and the label
store told what was written, so later batches of the same run can reuse it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from batch.flow.decide import Decision
from batch.flow.prompts import JobPrompts
from batch.flow.todo import ChunkTask
from batch.output.schema import rows_to_table
from batch.output.store import LabelStore
from batch.output.write import write_chunk_file


def write_tasks(
    todo: Sequence[ChunkTask],
    decisions: Sequence[Decision],
    rows: Sequence[dict[str, Any]],
    store: LabelStore,
    prompts: JobPrompts,
) -> None:
    """Write every task's file: the rows it kept, with the new ones in place of the old."""
    fresh: dict[int, dict[int, dict[str, Any]]] = {}
    for decision, row in zip(decisions, rows, strict=True):
        fresh.setdefault(decision.task, {})[decision.item.row] = row
    for index, task in enumerate(todo):
        mine = fresh.get(index, {})
        merged = {**task.existing, **mine}
        path = write_chunk_file(task.target, rows_to_table([merged[o] for o in sorted(merged)]))
        if task.superseded is not None:
            task.superseded.unlink(missing_ok=True)
        store.add(prompts.work_key(task.policy), str(path), mine.values())
