"""The write stage: rows as one commit (an upsert) to the output table, then the index told
what the table now holds, so later groups and runs can reuse and skip it."""

from __future__ import annotations

import json
from collections.abc import Sequence

from batch.flow.chunks import Chunk
from batch.flow.config import JobConfig
from batch.flow.prompts import JobPrompts
from batch.flow.rows import OutputRows
from batch.output.index import Index
from batch.output.store import LabelStore, reusable
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
    rows: OutputRows,
    chunks: Sequence[Chunk],
    output: tuple[LabelTable, Index, LabelStore],
    prompts: JobPrompts,
    config: JobConfig,
    run_id: str,
) -> int | None:
    """Tell the index which (file, policy) pairs the table is about to hold; commit rows (one
    upsert, pruned to their rows); then point the label store at the reusable ones. The new
    table version, or None if there was nothing to write."""
    if not len(rows):
        return None
    table, index, store = output
    metadata = {
        "run_id": run_id,
        "chunks": [f"{c.source.source_file}#{c.index}@{config.chunk_size}" for c in chunks],
    }
    policies = {policy.id: policy for policy in config.policies}
    pairs = {
        (task["source_file"], task["policy_id"]): task["source_fingerprint"] for task in rows.shared
    }
    # Told before the commit, not after: a run killed between the two leaves an index that
    # knows the table (may) hold rows of these files, so a file that shrinks later still loses
    # its vanished rows.
    work = {p: progress_work(policies[p], prompts, config) for _, p in pairs}
    index.record_progress(
        (source_file, policy_id, work[policy_id], fingerprint, False)
        for (source_file, policy_id), fingerprint in pairs.items()
    )
    version = table.upsert(rows.to_table(), metadata)
    if table.last_commit is not None:
        index.committed(*table.last_commit)
    pointers: dict[str, list[tuple[str, str, int]]] = {}
    v = rows.varying
    for slot, status, content, decider, source_row in zip(
        rows.task_of,
        v["status"],
        v["content_sha256"],
        v["decided_by"],
        v["source_row"],
        strict=True,
    ):
        if reusable(status, content, decider):
            task = rows.shared[slot]
            pointers.setdefault(task["policy_id"], []).append(
                (content, task["source_file"], source_row)
            )
    for policy_id, entries in pointers.items():
        store.add(prompts.work_key(policies[policy_id]), entries, version)
    return version
