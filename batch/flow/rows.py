"""Output rows: one per decided (row, policy), with every column docs/output.md documents.

Rows are built as columns, not dicts: a commit holds thousands of rows, and the columns one
(chunk, policy) task's rows share (source, policy, model, settings, run) are kept once per
task and repeated in Arrow, so a label costs a few list appends, not a dict of 38 entries
converted back into columns by ``pa.Table.from_pylist``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa

from batch.engine.base import Completion
from batch.flow.config import JobConfig
from batch.flow.decide import Candidate, Decision
from batch.flow.parse import Verdict
from batch.flow.prompts import JobPrompts
from batch.flow.score import verdict_score
from batch.flow.sources import as_text
from batch.flow.todo import ChunkTask
from batch.output.schema import DECIDED_BY, OK, ORIGIN_PLANNER, ORIGIN_PREFILTER, OUTPUT_SCHEMA
from batch.output.store import LABEL_COLUMNS

# Columns that differ from row to row: the row's identity and origin, and the label columns
# but the run's own two; every other column is one task's (``task_columns``).
VARYING_COLUMNS = (
    "id",
    "source_row",
    "content_sha256",
    "origin",
    *(name for name in LABEL_COLUMNS if name not in ("run_id", "labelled_at")),
)


@dataclass
class OutputRows:
    """Rows of the output table as columns.

    ``varying`` holds one list per column of ``VARYING_COLUMNS``; each row's other columns are
    those of its task, ``shared[task_of[row]]``, except where ``overrides`` gives the row its
    own value (a carried-over label keeps the run and time it was labelled at).
    """

    varying: dict[str, list[Any]] = field(default_factory=lambda: {c: [] for c in VARYING_COLUMNS})
    shared: list[dict[str, Any]] = field(default_factory=list)
    task_of: list[int] = field(default_factory=list)
    overrides: dict[int, dict[str, Any]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.task_of)

    def extend(self, other: OutputRows) -> None:
        """Append another set of rows after these."""
        rows, tasks = len(self), len(self.shared)
        for name, values in other.varying.items():
            self.varying[name].extend(values)
        self.shared.extend(other.shared)
        self.task_of.extend(task + tasks for task in other.task_of)
        self.overrides.update({row + rows: cols for row, cols in other.overrides.items()})

    def column(self, name: str) -> list[Any]:
        """One column's values, a row each."""
        if name in self.varying:
            return self.varying[name]
        per_task = [columns[name] for columns in self.shared]
        values = [per_task[task] for task in self.task_of]
        for row, columns in self.overrides.items():
            if name in columns:
                values[row] = columns[name]
        return values

    def to_table(self) -> pa.Table:
        """The rows as an Arrow table of the output schema."""
        overridden = {name for columns in self.overrides.values() for name in columns}
        take = pa.array(self.task_of, pa.int32())
        arrays = []
        for schema_field in OUTPUT_SCHEMA:
            name, kind = schema_field.name, schema_field.type
            if name in self.varying or name in overridden:
                arrays.append(pa.array(self.column(name), kind))
            else:
                arrays.append(pa.array([c[name] for c in self.shared], kind).take(take))
        return pa.Table.from_arrays(arrays, schema=OUTPUT_SCHEMA)


def _verdict(
    decision: Decision, task: ChunkTask, verdicts: Sequence[dict[str, Verdict]], config: JobConfig
) -> Verdict:
    """The verdict a decision stands for, whoever made it."""
    item = decision.item
    if decision.origin == ORIGIN_PLANNER:
        assert item.status is not None
        return Verdict(item.status, error=item.error)
    if decision.origin == ORIGIN_PREFILTER:
        threshold = config.prefilters[task.policy.id].threshold
        return Verdict(
            OK,
            label="0",
            violation=False,
            rationale=(
                f"prefilter score {decision.prefilter_score:.4f} is below its threshold "
                f"{threshold:.4f}"
            ),
        )
    if decision.stored is not None:
        return Verdict(decision.stored["status"])
    assert decision.group is not None
    return verdicts[decision.group][task.policy.id]


def task_columns(
    task: ChunkTask, config: JobConfig, prompts: JobPrompts, run_id: str, labelled_at: datetime
) -> dict[str, Any]:
    """The columns every row of one (chunk, policy) shares: computed once per task."""
    source, policy = task.chunk.source, task.policy
    return {
        "source_file": source.source_file,
        "source_path": as_text(source.path),
        "source_fingerprint": source.fingerprint,
        "policy_id": policy.id,
        "policy_version": policy.version,
        "policy_sha256": policy.sha256,
        "prompt_sha256": prompts.prefixes[policy.id].sha256,
        "model": config.model,
        "model_fingerprint": config.model_fingerprint,
        "settings_sha256": prompts.settings,
        "route": prompts.routes.get(policy.id) or None,
        "reasoning_effort": config.reasoning_effort,
        "temperature": config.sampling.temperature,
        "top_p": config.sampling.top_p,
        "max_tokens": config.sampling.max_tokens,
        "reused_by_run_id": None,
        "run_id": run_id,
        "labelled_at": labelled_at,
    }


def _carry_stored(rows: OutputRows, stored: dict[str, Any], run_id: str) -> None:
    """Make the last row the earlier label ``stored`` holds, with its own run and seed."""
    row, own = len(rows) - 1, {"reused_by_run_id": run_id}
    for name, value in stored.items():
        if name in rows.varying:
            rows.varying[name][row] = value
        else:
            own[name] = value
    rows.overrides[row] = own


def build_rows(
    tasks: Sequence[ChunkTask],
    decisions: Sequence[Decision],
    leaders: Sequence[Candidate],
    results: Sequence[Completion | str | None],
    verdicts: Sequence[dict[str, Verdict]],
    config: JobConfig,
    prompts: JobPrompts,
    run_id: str,
    labelled_at: datetime,
) -> OutputRows:
    """One row per decision, in the decisions' order."""
    rows = OutputRows()
    slots: dict[int, int] = {}  # task number -> its entry in rows.shared
    v = rows.varying
    ids, source_rows, contents = v["id"], v["source_row"], v["content_sha256"]
    labels, violations, scores = v["label"], v["violation"], v["score"]
    categories, rationales, reasonings = v["policy_category"], v["rationale"], v["reasoning"]
    statuses, errors, finishes = v["status"], v["error"], v["finish_reason"]
    prompt_tokens, completion_tokens = v["prompt_tokens"], v["completion_tokens"]
    seeds, attempts, origins, deciders = v["seed"], v["attempt"], v["origin"], v["decided_by"]
    prefilter_scores, audits = v["prefilter_score"], v["prefilter_audit"]
    for decision in decisions:
        task, item = tasks[decision.task], decision.item
        slot = slots.get(decision.task)
        if slot is None:
            slot = slots[decision.task] = len(rows.shared)
            rows.shared.append(task_columns(task, config, prompts, run_id, labelled_at))
        rows.task_of.append(slot)
        result = results[decision.group] if decision.group is not None else None
        completion = result if isinstance(result, Completion) else None
        verdict = _verdict(decision, task, verdicts, config)
        ids.append(task.chunk.ids[item.row])
        source_rows.append(task.chunk.first_row + item.row)
        contents.append(item.content_sha256)
        labels.append(verdict.label)
        violations.append(verdict.violation)
        scored = verdict.status == OK and not config.combined
        scores.append(verdict_score(completion, task.policy.output) if scored else None)
        categories.append(verdict.policy_category)
        rationales.append(verdict.rationale)
        reasonings.append(verdict.reasoning)
        statuses.append(verdict.status)
        errors.append(verdict.error)
        finishes.append(completion.finish_reason if completion is not None else None)
        prompt_tokens.append(item.prompt_tokens)
        completion_tokens.append(len(completion.token_ids) if completion is not None else None)
        asked = leaders[decision.group].item if decision.group is not None else item
        seeds.append(asked.seed)  # a carried-over label's own seed comes with it, below
        attempts.append(asked.attempt)
        origins.append(decision.origin)
        deciders.append(DECIDED_BY.get(decision.origin, "model"))
        prefilter_scores.append(decision.prefilter_score)
        audits.append(decision.audit if decision.prefilter_score is not None else None)
        if decision.stored is not None:
            _carry_stored(rows, decision.stored, run_id)
    return rows
