"""Which input files a run labels, under which policies, and what it records when done.

A (file, policy) whose every row already holds a final label under this run's work, for the
file's current bytes, is skipped without reading the file (the nightly case: yesterday's
shards cost a ``stat`` each). A file another live run has claimed is left to it. A file whose
bytes changed loses the labels of rows past its end before anything else is written. At the
end, each fully read file is marked complete or not.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from batch.flow.config import JobConfig
from batch.flow.prompts import JobPrompts
from batch.flow.sources import InputFile, remember
from batch.flow.stats import RunStats
from batch.flow.write import progress_work
from batch.output.claims import Claims
from batch.output.index import Index
from batch.output.recover import needs_rebuild, rebuild
from batch.output.store import FOLD_ROWS, LabelStore
from batch.output.table import LabelTable


@dataclass(frozen=True)
class FilePlan:
    source: InputFile
    policies: frozenset[str]  # policy ids to label this file under in this run
    complete: frozenset[str]  # policy ids under which it is complete already
    claimed_by: str | None = None  # the live run that holds it, if another one does
    changed: frozenset[str] = frozenset()  # policies it was labelled under with other bytes
    had_rows: frozenset[str] = frozenset()  # policies the table held rows of it under


def had_rows(plans: list[FilePlan]) -> set[tuple[str, str]]:
    """The (source file, policy) pairs the table held rows of when the files were planned:
    the only ones a run reads back (what it writes itself, it knows)."""
    return {(plan.source.source_file, policy) for plan in plans for policy in plan.had_rows}


def claim_key(source: InputFile, config: JobConfig) -> str:
    return f"{source.source_file}|{','.join(sorted(p.id for p in config.policies))}"


def _check_marks(table: LabelTable, index: Index) -> None:
    """Drop every completeness mark if a writer other than this tool changed the table since
    the index last looked (a delete or an append by hand, say)."""
    if needs_rebuild(table, index):
        rebuild(table, index)
    elif LabelStore(index).needs_refill():  # an index of an older version
        rebuild(table, index, progress=False)
    elif table.foreign_changes(index.table_version_seen()):
        index.forget_complete()
    index.saw_table_version(table.version() or 0)


def plan_files(
    config: JobConfig, prompts: JobPrompts, output: tuple[LabelTable, Index], claims: Claims | None
) -> list[FilePlan]:
    """For every input file: the policies to label it under now, and why the others not."""
    table, index = output
    _check_marks(table, index)
    remember(config.inputs, index)
    plans = []
    work = {p.id: progress_work(p, prompts, config) for p in config.policies}
    for source in config.inputs:
        complete, changed, held = set(), set(), set()
        for policy in config.policies:
            progress = index.progress(source.source_file, policy.id)
            if progress is None:
                continue
            held.add(policy.id)
            if progress.sha256 != source.fingerprint:
                changed.add(policy.id)
            elif progress.complete and not config.force and progress.work == work[policy.id]:
                complete.add(policy.id)
        todo = frozenset(p.id for p in config.policies) - complete
        holder = None
        if todo and claims is not None and not claims.claim(claim_key(source, config)):
            holder = (claims.holder(claim_key(source, config)) or {}).get("run_id", "another run")
            todo = frozenset()
        elif changed:
            _drop_vanished_rows(table, source, changed)
        plans.append(
            FilePlan(source, todo, frozenset(complete), holder, frozenset(changed), frozenset(held))
        )
    return plans


def _drop_vanished_rows(table: LabelTable, source: InputFile, policies: set[str]) -> None:
    """A file whose bytes changed may have shrunk: its rows past the end go now, before any
    label of the new bytes is written (which would make the file look unchanged)."""
    for policy_id in sorted(policies):
        table.delete_rows(source.source_file, policy_id, source.num_rows)


def skipped_stats(plans: list[FilePlan], config: JobConfig, sampled: dict | None) -> RunStats:
    """Counts for the files (or policies) this run does not read: complete, or claimed."""
    stats = RunStats()
    for plan in plans:
        if plan.policies:
            continue
        rows = plan.source.num_rows if sampled is None else len(sampled.get(plan.source.path, ()))
        stats.rows += rows
        for policy in config.policies:
            counts = stats.policy(policy.id)
            counts.rows += rows
            if policy.id in plan.complete:
                counts.kept += rows
            else:
                counts.left_to_other_runs += rows
    return stats


def finish_files(
    plans: list[FilePlan],
    stats: RunStats,
    config: JobConfig,
    prompts: JobPrompts,
    output: tuple[LabelTable, Index],
) -> None:
    """Mark each fully read file complete (or not)."""
    if config.sample is not None or config.retry_failed:
        return
    table, index = output
    unreadable = {bad["path"] for bad in stats.unreadable}
    entries = []
    for plan in plans:
        source = plan.source
        if not plan.policies or source.path in unreadable:
            continue
        final = stats.final_rows.get(source.source_file, Counter())
        for policy in config.policies:
            if policy.id not in plan.policies:
                continue
            work = progress_work(policy, prompts, config)
            complete = final[policy.id] >= source.num_rows
            entries.append((source.source_file, policy.id, work, source.fingerprint, complete))
    index.record_progress(entries)
    store = LabelStore(index)
    if store.recent_rows() > FOLD_ROWS:
        store.fold()
