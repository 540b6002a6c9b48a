"""What is left to do for a (chunk, policy), given the table's current rows: resume, change
detection and retry.

A row needs the model when the table holds no current row for it, when its content changed
(``content_sha256``), when it was labelled under other work (policy, prompt, model, settings
or prefilter route), or when it failed and has attempts left. Everything else is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from batch.flow.chunks import Chunk
from batch.flow.config import JobConfig
from batch.flow.prompts import JobPrompts
from batch.output.schema import RETRYABLE
from batch.output.table import LabelTable
from batch.policy.files import Policy

# What the plan needs to know of a current row.
CURRENT_COLUMNS = [
    "source_file", "source_row", "policy_id", "content_sha256", "policy_sha256",
    "prompt_sha256", "model_fingerprint", "settings_sha256", "route", "status", "attempt",
]  # fmt: skip
_WORK = ("policy_sha256", "prompt_sha256", "model_fingerprint", "settings_sha256", "route")

CurrentRows = dict[tuple[str, str], dict[int, dict[str, Any]]]  # (file, policy) -> row -> cols


@dataclass
class ChunkTask:
    """The work for one (chunk, policy): the rows to (re)do, and how many stay as they are."""

    chunk: Chunk
    policy: Policy
    rows: dict[int, int]  # row offset in the chunk -> attempt number; empty: nothing to do
    retries: set[int] = field(default_factory=set)  # offsets whose earlier label failed
    kept: int = 0  # rows whose current label stays


def current_rows(
    table: LabelTable,
    chunks: Sequence[Chunk],
    policies: Sequence[Policy],
    had_rows: Callable[[str, str], bool],
) -> CurrentRows:
    """The table's current rows for these chunks' rows, read only where the table held rows
    of their (file, policy) before this run (``had_rows``): a new file costs no read, and
    rows this run wrote are not read back. The read is pruned to the chunks' rows, so its cost
    follows the chunks, not what the table holds for their files."""
    pairs = {
        (chunk.source.source_file, policy.id)
        for chunk in chunks
        for policy in policies
        if had_rows(chunk.source.source_file, policy.id)
    }
    if not pairs:
        return {}
    files = {f for f, _ in pairs}
    policy_ids = sorted({p for _, p in pairs})
    ranges: dict[str, list[tuple[int, int]]] = {}
    for chunk in sorted(chunks, key=lambda c: (c.source.source_file, c.first_row)):
        if chunk.source.source_file not in files or not chunk.ids:
            continue
        spans = ranges.setdefault(chunk.source.source_file, [])
        last = chunk.first_row + len(chunk.ids) - 1
        if spans and spans[-1][1] + 1 >= chunk.first_row:  # adjacent chunks: one range
            spans[-1] = (spans[-1][0], max(last, spans[-1][1]))
        else:
            spans.append((chunk.first_row, last))
    found: CurrentRows = {}
    for row in table.current(files, policy_ids, CURRENT_COLUMNS, ranges).to_pylist():
        found.setdefault((row["source_file"], row["policy_id"]), {})[row["source_row"]] = row
    return found


def work_of(policy: Policy, prompts: JobPrompts) -> tuple[Any, ...]:
    """The work-key columns a current row must hold to count as this run's work."""
    key = prompts.work_key(policy)
    route = prompts.routes.get(policy.id) or None
    return (key.policy_sha256, key.prompt_sha256, key.model_fingerprint, key.settings_sha256, route)


def pending_task(
    chunk: Chunk,
    policy: Policy,
    prompts: JobPrompts,
    config: JobConfig,
    current: dict[int, dict[str, Any]],
) -> ChunkTask:
    """The rows of ``chunk`` still to label under ``policy``, given its current rows."""
    wanted = chunk.wanted_rows()
    if chunk.policies is not None and policy.id not in chunk.policies:
        return ChunkTask(chunk, policy, {})  # complete already, or left to another run
    if config.force:
        return ChunkTask(chunk, policy, {} if config.retry_failed else dict.fromkeys(wanted, 1))
    work = work_of(policy, prompts)
    todo: dict[int, int] = {}
    retries: set[int] = set()
    kept = 0
    for offset in sorted(wanted):
        row = current.get(chunk.first_row + offset)
        same = (
            row is not None
            and row["content_sha256"] == chunk.hashes[offset]
            and tuple(row[c] for c in _WORK) == work
        )
        if not same:
            if not config.retry_failed:
                todo[offset] = 1
        elif row["status"] in RETRYABLE and row["attempt"] < config.max_attempts:
            todo[offset] = row["attempt"] + 1
            retries.add(offset)
        else:
            kept += 1
    return ChunkTask(chunk, policy, todo, retries, kept)
