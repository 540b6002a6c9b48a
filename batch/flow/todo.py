"""What is left to do for a (chunk, policy), given what earlier runs wrote: resume and retry.

A chunk's labels for one policy live in one file named after the work (``layout``): if it
exists the chunk is done, except for failed rows that still have attempts left. A sample run
writes a partial file until a later run covers the whole chunk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from batch.flow.chunks import Chunk
from batch.flow.config import JobConfig
from batch.flow.prompts import JobPrompts
from batch.output.layout import chunk_file_name, chunk_path, partial_chunk_path
from batch.output.schema import RETRYABLE
from batch.policy.files import Policy


@dataclass
class ChunkTask:
    """The work for one (chunk, policy): the rows to (re)do and the rows already on disk."""

    chunk: Chunk
    policy: Policy
    rows: dict[int, int]  # row offset in the chunk -> attempt number; empty: nothing to do
    target: Path  # the full chunk file, or a partial one while a sample covers part of it
    existing: dict[int, dict[str, Any]] = field(default_factory=dict)  # kept unless redone
    superseded: Path | None = None  # a partial file to delete once the full one is in place
    kept: int = 0  # rows an earlier run labelled that stay as they are


def chunk_name(chunk: Chunk, chunk_size: int, policy: Policy, prompts: JobPrompts) -> str:
    """The chunk file's name: every part of the work it holds, hashed."""
    work = [
        chunk.source.path,
        chunk.source.fingerprint,
        str(chunk.index),
        str(chunk_size),
        policy.sha256,
        prompts.prefixes[policy.id].sha256,
        prompts.model_fingerprint,
        prompts.settings,
    ]
    if route := prompts.routes.get(policy.id):
        work.append(route)
    return chunk_file_name(chunk.source.fingerprint, chunk.index, work)


def pending_task(chunk: Chunk, policy: Policy, prompts: JobPrompts, config: JobConfig) -> ChunkTask:
    """The rows of ``chunk`` still to label under ``policy``, and where they go."""
    name = chunk_name(chunk, config.chunk_size, policy, prompts)
    full = chunk_path(config.output, policy.id, name)
    partial = partial_chunk_path(config.output, policy.id, name)
    wanted = chunk.wanted_rows()
    nothing = ChunkTask(chunk, policy, {}, full)
    if config.force:
        if config.retry_failed:
            return nothing
        stale = partial if partial.exists() else None
        return ChunkTask(chunk, policy, dict.fromkeys(wanted, 1), full, superseded=stale)
    if full.exists():
        partial.unlink(missing_ok=True)  # left by a run killed just after the full write
        on_disk = full
    elif partial.exists():
        on_disk = partial
    else:
        if config.retry_failed:
            return nothing
        target = full if len(wanted) == len(chunk.ids) else partial
        return ChunkTask(chunk, policy, dict.fromkeys(wanted, 1), target)
    return _resumed_task(chunk, policy, on_disk, full, partial, wanted, config)


def _resumed_task(
    chunk: Chunk,
    policy: Policy,
    on_disk: Path,
    full: Path,
    partial: Path,
    wanted: set[int],
    config: JobConfig,
) -> ChunkTask:
    """A chunk with a file on disk: retry its failed rows, add the rows it lacks."""
    # Only the bookkeeping columns: reasoning text is read only if a row must be redone.
    done = pq.read_table(on_disk, columns=["source_row", "status", "attempt"]).to_pylist()
    present = {row["source_row"] - chunk.first_row: row for row in done}
    todo = {
        offset: row["attempt"] + 1
        for offset, row in present.items()
        if offset in wanted and row["status"] in RETRYABLE and row["attempt"] < config.max_attempts
    }
    if not config.retry_failed:
        todo.update(dict.fromkeys(wanted - present.keys(), 1))
    kept = len(wanted & present.keys()) - sum(1 for o in todo if o in present)
    if not todo:
        return ChunkTask(chunk, policy, {}, on_disk, kept=kept)
    existing = {
        row["source_row"] - chunk.first_row: row for row in pq.read_table(on_disk).to_pylist()
    }
    covered = len(existing.keys() | todo.keys()) == len(chunk.ids)
    target = full if covered else partial
    superseded = partial if target == full and on_disk == partial else None
    return ChunkTask(chunk, policy, todo, target, existing, superseded, kept)
