"""Output rows: one per decided (row, policy), with every column docs/output.md documents."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from batch.engine.base import Completion
from batch.flow.config import JobConfig
from batch.flow.decide import Candidate, Decision
from batch.flow.parse import Verdict
from batch.flow.prompts import JobPrompts
from batch.flow.score import verdict_score
from batch.flow.sources import as_text
from batch.flow.todo import ChunkTask
from batch.output.schema import DECIDED_BY, OK, ORIGIN_PLANNER, ORIGIN_PREFILTER


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


def output_row(
    task: ChunkTask,
    decision: Decision,
    verdict: Verdict,
    completion: Completion | None,
    shared: dict[str, Any],
    combined: bool,
) -> dict[str, Any]:
    """The output row for one decided (row, policy); ``shared``: its task's columns."""
    chunk, item = task.chunk, decision.item
    row = dict(shared)
    row["id"] = chunk.ids[item.row]
    row["source_row"] = chunk.first_row + item.row
    row["content_sha256"] = item.content_sha256
    row["label"] = verdict.label
    row["violation"] = verdict.violation
    row["score"] = (
        verdict_score(completion, task.policy.output)
        if verdict.status == OK and not combined
        else None
    )
    row["policy_category"] = verdict.policy_category
    row["rationale"] = verdict.rationale
    row["reasoning"] = verdict.reasoning
    row["status"] = verdict.status
    row["error"] = verdict.error
    row["finish_reason"] = completion.finish_reason if completion is not None else None
    row["prompt_tokens"] = item.prompt_tokens
    row["completion_tokens"] = len(completion.token_ids) if completion is not None else None
    row["seed"] = item.seed
    row["attempt"] = item.attempt
    row["origin"] = decision.origin
    row["decided_by"] = DECIDED_BY.get(decision.origin, "model")
    row["prefilter_score"] = decision.prefilter_score
    row["prefilter_audit"] = decision.audit if decision.prefilter_score is not None else None
    return row


def build_rows(
    tasks: Sequence[ChunkTask],
    decisions: Sequence[Decision],
    leaders: Sequence[Candidate],
    results: Sequence[Completion | str],
    verdicts: Sequence[dict[str, Verdict]],
    config: JobConfig,
    prompts: JobPrompts,
    run_id: str,
    labelled_at: datetime,
) -> list[dict[str, Any]]:
    """One row per decision, in the decisions' order."""
    rows = []
    shared: dict[int, dict[str, Any]] = {}
    for decision in decisions:
        task = tasks[decision.task]
        columns = shared.get(decision.task)
        if columns is None:
            columns = shared[decision.task] = task_columns(
                task, config, prompts, run_id, labelled_at
            )
        result = results[decision.group] if decision.group is not None else None
        completion = result if isinstance(result, Completion) else None
        verdict = _verdict(decision, task, verdicts, config)
        row = output_row(task, decision, verdict, completion, columns, config.combined)
        if decision.stored is not None:
            row.update(decision.stored)  # the earlier label, with its own run and seed
            row["reused_by_run_id"] = run_id
        elif decision.group is not None:
            leader = leaders[decision.group].item
            row["seed"], row["attempt"] = leader.seed, leader.attempt
        rows.append(row)
    return rows
