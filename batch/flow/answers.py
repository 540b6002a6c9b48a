"""The parse stage over one engine batch: each request's answer, once, as a verdict per policy."""

from __future__ import annotations

from collections.abc import Sequence

from batch.engine.base import Completion
from batch.flow.combined import parse_combined
from batch.flow.decide import Candidate
from batch.flow.parse import Verdict, parse_completion
from batch.flow.todo import ChunkTask
from batch.output.schema import ENGINE_ERROR
from batch.policy.files import Policy


def parse_answers(
    leaders: Sequence[Candidate],
    results: Sequence[Completion | str],
    tasks: Sequence[ChunkTask],
    policies: Sequence[Policy],
    combined: bool,
) -> list[dict[str, Verdict]]:
    """Verdicts by policy id, per request; a ``str`` result is the engine's error message."""
    parsed: list[dict[str, Verdict]] = []
    for leader, result in zip(leaders, results, strict=True):
        if isinstance(result, str):
            failed = Verdict(ENGINE_ERROR, error=result)
            parsed.append({p.id: failed for p in policies})
        elif combined:
            parsed.append(parse_combined(result.token_ids, result.finish_reason, policies))
        else:
            policy = tasks[leader.task].policy
            verdict = parse_completion(result.token_ids, result.finish_reason, policy.output)
            parsed.append({policy.id: verdict})
    return parsed
