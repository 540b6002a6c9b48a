"""The write stage: a group's rows as one commit (an upsert) to the output table, then the
index told what the table now holds, so later groups and runs can reuse and skip it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from batch.flow.chunks import Chunk
from batch.flow.config import JobConfig
from batch.flow.decide import Decision
from batch.flow.prompts import JobPrompts
from batch.flow.todo import ChunkTask
from batch.output.index import Index
from batch.output.schema import rows_to_table
from batch.output.store import LabelStore
from batch.output.table import LabelTable
from batch.policy.files import Policy


def progress_work(policy: Policy, prompts: JobPrompts, config: JobConfig) -> str:
    """What a (file, policy) is complete *for*: the work key, the columns read, the retry limit."""
    key = prompts.work_key(policy)
    return json.dumps(
        [
            key.policy_sha256,
            key.prompt_sha256,
            key.model_fingerprint,
            key.settings_sha256,
            prompts.routes.get(policy.id) or None,
            config.id_column,
            config.text_column,
            config.max_attempts,
        ]
    )


def write_rows(
    todo: Sequence[ChunkTask],
    decisions: Sequence[Decision],
    rows: Sequence[dict[str, Any]],
    chunks: Sequence[Chunk],
    output: tuple[LabelTable, Index, LabelStore],
    prompts: JobPrompts,
    config: JobConfig,
    run_id: str,
) -> int | None:
    """Commit the group's rows (one upsert); the new table version, or None if none."""
    if not rows:
        return None
    table, index, store = output
    metadata = {
        "run_id": run_id,
        "chunks": [f"{c.source.source_file}#{c.index}@{config.chunk_size}" for c in chunks],
    }
    version = table.upsert(rows_to_table(list(rows)), metadata)
    by_task: dict[int, list[dict[str, Any]]] = {}
    for decision, row in zip(decisions, rows, strict=True):
        by_task.setdefault(decision.task, []).append(row)
    written = [todo[number] for number in by_task]  # the tasks these rows belong to
    for number, task_rows in by_task.items():
        store.add(prompts.work_key(todo[number].policy), task_rows)
    index.record_progress(
        {
            (t.chunk.source.source_file, t.policy.id): (
                t.chunk.source.source_file,
                t.policy.id,
                progress_work(t.policy, prompts, config),
                t.chunk.source.fingerprint,
                False,
            )
            for t in written
        }.values()
    )
    return version
