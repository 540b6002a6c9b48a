"""Counts for the run manifest: what each group of chunks did, merged into the run's totals.

A group's counts are computed once, from what its stages returned (``count_tasks`` when it is
done, ``count_decisions`` for each commit of its rows); runners only merge them, whether they
come from this process or, as JSON, from a Ray actor.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from batch.engine.base import Completion
from batch.flow.decide import Candidate, Decision
from batch.flow.rows import OutputRows
from batch.flow.todo import ChunkTask
from batch.output.schema import (
    OK,
    ORIGIN_DUPLICATE,
    ORIGIN_MODEL,
    ORIGIN_PLANNER,
    ORIGIN_PREFILTER,
    ORIGIN_REUSED,
    RETRYABLE,
)

# The per-policy counter each origin adds to.
_ORIGIN_COUNTS = {
    ORIGIN_MODEL: "requests_sent",
    ORIGIN_REUSED: "reused",
    ORIGIN_DUPLICATE: "deduplicated",
    ORIGIN_PLANNER: "decided_without_model",
    ORIGIN_PREFILTER: "prefiltered",
}


@dataclass
class PolicyStats:
    """Per-policy counts for the manifest: where each row's label came from."""

    rows: int = 0  # input rows this run was asked to label
    kept: int = 0  # already in the output from an earlier run, left as they were
    requests_sent: int = 0  # requests the engine saw for this policy
    reused: int = 0  # identical earlier work carried over from the label store
    deduplicated: int = 0  # identical content in this run, judged once and fanned out
    decided_without_model: int = 0  # empty or too long
    retried: int = 0  # failed rows tried again
    prefiltered: int = 0  # label 0 from the prefilter, never sent
    audited: int = 0  # below the prefilter's threshold but sent anyway (--audit-rate)
    audit_ok: int = 0  # audited rows the model answered (status ok)
    audit_violations: int = 0  # ... of which the model said 1: the prefilter's misses
    left_to_other_runs: int = 0  # rows of files another live run had claimed
    status: Counter = field(default_factory=Counter)

    def merge(self, other: PolicyStats) -> None:
        for f in fields(self):
            if f.name == "status":
                self.status.update(other.status)
            else:
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["status"] = dict(self.status)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PolicyStats:
        return cls(**{**data, "status": Counter(data.get("status", {}))})


_TOTALS = (
    "rows", "requests", "prompt_tokens", "cached_tokens", "completion_tokens",
    "generate_seconds", "commits",
)  # fmt: skip


@dataclass
class RunStats:
    rows: int = 0
    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    generate_seconds: float = 0.0
    commits: int = 0  # commits to the output table
    status_counts: Counter = field(default_factory=Counter)
    per_policy: dict[str, PolicyStats] = field(default_factory=dict)
    unreadable: list[dict[str, str]] = field(default_factory=list)  # failed mid-read, skipped
    # Per source file and policy: rows that hold a final label after this run's commits.
    final_rows: dict[str, Counter] = field(default_factory=dict)
    versions: list[int] = field(default_factory=list)  # table versions this run committed
    first_commit_seconds: float | None = None  # from the run's start; set by the runner

    def policy(self, policy_id: str) -> PolicyStats:
        return self.per_policy.setdefault(policy_id, PolicyStats())

    def total(self, name: str) -> int:
        return sum(getattr(p, name) for p in self.per_policy.values())

    def merge(self, other: RunStats) -> None:
        """Add another group's (or actor's) counts to these."""
        for name in _TOTALS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.status_counts.update(other.status_counts)
        for policy_id, counts in other.per_policy.items():
            self.policy(policy_id).merge(counts)
        self.unreadable += other.unreadable
        for source_file, counts in other.final_rows.items():
            self.final_rows.setdefault(source_file, Counter()).update(counts)
        self.versions += other.versions

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON, to travel from a Ray actor to the driver."""
        return {
            **{name: getattr(self, name) for name in _TOTALS},
            "status_counts": dict(self.status_counts),
            "per_policy": {pid: p.to_dict() for pid, p in self.per_policy.items()},
            "unreadable": self.unreadable,
            "final_rows": {f: dict(c) for f, c in self.final_rows.items()},
            "versions": self.versions,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunStats:
        return cls(
            **{name: data[name] for name in _TOTALS},
            status_counts=Counter(data["status_counts"]),
            per_policy={pid: PolicyStats.from_dict(p) for pid, p in data["per_policy"].items()},
            unreadable=list(data.get("unreadable", [])),
            final_rows={f: Counter(c) for f, c in data.get("final_rows", {}).items()},
            versions=list(data.get("versions", [])),
        )


def _final(stats: RunStats, task: ChunkTask) -> Counter:
    counts = stats.final_rows.get(task.chunk.source.source_file)
    if counts is None:
        counts = stats.final_rows[task.chunk.source.source_file] = Counter()
    return counts


def count_tasks(policy_ids: Sequence[str], rows_asked: int, tasks: Sequence[ChunkTask]) -> RunStats:
    """What a group was asked and kept as it was: counted once, when the group is done."""
    stats = RunStats(rows=rows_asked)
    for policy_id in policy_ids:
        stats.policy(policy_id).rows += rows_asked
    for task in tasks:
        stats.policy(task.policy.id).kept += task.kept
        _final(stats, task).update({task.policy.id: task.kept})
    return stats


def count_decisions(
    max_attempts: int,
    todo: Sequence[ChunkTask],
    decided: tuple[Sequence[Decision], OutputRows],
    asked: tuple[Sequence[Candidate], Sequence[Completion | str]],
) -> RunStats:
    """What some decisions of a group did, as one commit wrote them: every count of the
    manifest but the group's own (``count_tasks``).

    Decisions and rows refer to ``todo``; ``asked`` are the requests whose every row is among
    them. Rows with a final label (not a failure with attempts left) are counted per source
    file, to mark files complete at the end.
    """
    (decisions, rows), (leaders, results) = decided, asked
    stats = RunStats(requests=len(leaders), commits=int(len(rows) > 0))
    statuses, attempts, labels = rows.column("status"), rows.column("attempt"), rows.column("label")
    for decision, status, attempt, label in zip(decisions, statuses, attempts, labels, strict=True):
        task = todo[decision.task]
        counts = stats.policy(task.policy.id)
        name = _ORIGIN_COUNTS[decision.origin]
        setattr(counts, name, getattr(counts, name) + 1)
        counts.retried += decision.item.row in task.retries
        if status not in RETRYABLE or attempt >= max_attempts:
            _final(stats, task)[task.policy.id] += 1
        counts.status[status] += 1
        stats.status_counts[status] += 1
        if decision.audit:
            counts.audited += 1
            counts.audit_ok += status == OK
            counts.audit_violations += status == OK and label == "1"
    for leader, result in zip(leaders, results, strict=True):
        if isinstance(result, Completion):
            stats.prompt_tokens += leader.item.prompt_tokens or 0
            stats.completion_tokens += len(result.token_ids)
            stats.cached_tokens += result.num_cached_tokens
    return stats
