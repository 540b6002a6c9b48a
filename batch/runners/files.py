"""Which input files a run labels, under which policies, and what it records when done.

A (file, policy) whose every row already holds a final label under this run's work, for the
file's current bytes, is skipped without reading the file (the nightly case: yesterday's
shards cost a ``stat`` each). Such a completeness mark holds only in the table history it was
made in: each run first checks the history since the last check (``output.history``): a
commit of another writer that changed data invalidates the marks of runs that planned before
it; a table that went back (log entries deleted, restored from a backup) invalidates all.
A file another live run has claimed is left to it (the local runner waits for it). A file
whose bytes changed loses the labels of rows past its end before anything else is written.
Once a file is written whole it is marked complete or not, then its claim is released.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from batch.flow.config import JobConfig
from batch.flow.prompts import JobPrompts
from batch.flow.sources import InputFile, remember
from batch.flow.stats import RunStats
from batch.flow.write import progress_work
from batch.output import history
from batch.output.claims import Claims
from batch.output.history import Seen
from batch.output.index import Index, Mark
from batch.output.recover import learn, needs_rebuild, rebuild
from batch.output.store import LabelStore
from batch.output.table import LabelTable


@dataclass(frozen=True)
class FilePlan:
    source: InputFile
    policies: frozenset[str]  # policy ids to label this file under in this run
    complete: frozenset[str]  # policy ids under which it is complete already
    claimed_by: str | None = None  # the live run that holds it, if another one does
    changed: frozenset[str] = frozenset()  # policies it was labelled under with other bytes
    had_rows: frozenset[str] = frozenset()  # policies the table held rows of it under
    mark: Mark | None = None  # what the run knew of the table when it planned this file


def had_rows(plans: list[FilePlan]) -> set[tuple[str, str]]:
    """The (source file, policy) pairs the table held rows of when the files were planned:
    the only ones a run reads back (what it writes itself, it knows)."""
    return {(plan.source.source_file, policy) for plan in plans for policy in plan.had_rows}


def claim_key(source: InputFile, config: JobConfig) -> str:
    return f"{source.source_file}|{','.join(sorted(p.id for p in config.policies))}"


def _check_marks(table: LabelTable, index: Index) -> Mark:
    """Check the table's history since the index last looked; what this run plans from."""
    if needs_rebuild(table, index):
        rebuild(table, index)
    elif LabelStore(index).needs_refill():  # an index of an older version
        rebuild(table, index, progress=False)
    checked = Seen.from_text(index.checked())
    happened = history.since(table, checked) if checked is not None else None
    if happened is not None and happened.went_back:
        index.went_back()
    elif happened is not None and happened.foreign_version is not None:
        learn(table, index, happened.foreign_versions)
        index.saw_foreign(happened.foreign_version)
    current = happened.now if happened is not None else history.now(table)
    if current is not None:
        index.set_meta("checked", current.to_text())
    return Mark(current.version if current is not None else -1, index.epoch())


def plan_files(
    config: JobConfig,
    prompts: JobPrompts,
    output: tuple[LabelTable, Index],
    claims: Claims | None,
    sources: list[InputFile] | None = None,
) -> list[FilePlan]:
    """For every input file (or those of ``sources``): the policies to label it under now,
    and why the others not."""
    table, index = output
    sources = config.inputs if sources is None else sources
    mark = _check_marks(table, index)
    remember(sources, index)
    plans = []
    work = {p.id: progress_work(p, prompts, config) for p in config.policies}
    for source in sources:
        complete, changed, held = set(), set(), set()
        for policy in config.policies:
            progress = index.progress(source.source_file, policy.id)
            if progress is None:
                continue
            held.add(policy.id)
            if progress.sha256 != source.fingerprint:
                changed.add(policy.id)
            elif not config.force and progress.work == work[policy.id] and index.valid(progress):
                complete.add(policy.id)
        todo = frozenset(p.id for p in config.policies) - complete
        holder = None
        if todo and claims is not None and not claims.claim(claim_key(source, config)):
            holder = (claims.holder(claim_key(source, config)) or {}).get("run_id", "another run")
            todo = frozenset()
        elif changed:
            _drop_vanished_rows(table, source, changed)
        sets = (frozenset(complete), holder, frozenset(changed), frozenset(held))
        plans.append(FilePlan(source, todo, *sets, mark=mark))
    return plans


def _drop_vanished_rows(table: LabelTable, source: InputFile, policies: set[str]) -> None:
    """A file whose bytes changed may have shrunk: its rows past the end go now, before any
    label of the new bytes is written (which would make the file look unchanged)."""
    for policy_id in sorted(policies):
        table.delete_rows(source.source_file, policy_id, source.num_rows)


def skipped_stats(
    plans: list[FilePlan], config: JobConfig, sampled: dict | None, by_others: bool = False
) -> RunStats:
    """Counts for the files (or policies) this run does not read: complete, or claimed
    (``by_others``: completed by another live run while this one waited for it)."""
    stats = RunStats()
    for plan in plans:
        if plan.policies:
            continue
        rows = plan.source.num_rows if sampled is None else len(sampled.get(plan.source.path, ()))
        stats.rows += rows
        for policy in config.policies:
            counts = stats.policy(policy.id)
            counts.rows += rows
            if policy.id in plan.complete and not by_others:
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
    """Mark each fully read file complete (or not), as of the table its run planned from."""
    if config.sample is not None or config.retry_failed:
        return
    _, index = output
    unreadable = {bad["path"] for bad in stats.unreadable}
    for plan in plans:
        source = plan.source
        if not plan.policies or source.path in unreadable:
            continue
        final = stats.final_rows.get(source.source_file, Counter())
        entries = [
            (source.source_file, policy.id, progress_work(policy, prompts, config),
             source.fingerprint, final[policy.id] >= source.num_rows)
            for policy in config.policies
            if policy.id in plan.policies
        ]  # fmt: skip
        index.record_progress(entries, plan.mark)
