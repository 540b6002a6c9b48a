"""Requests for the engine: one per distinct (policy, content), or per content when policies
are combined. The first row of a group is the ``model`` row; identical content elsewhere in
the batch shares its answer as a ``duplicate``."""

from __future__ import annotations

from collections.abc import Sequence

from batch.flow.decide import Candidate, Decision
from batch.flow.todo import ChunkTask
from batch.output.schema import ORIGIN_DUPLICATE, ORIGIN_MODEL


def group_requests(
    candidates: list[Candidate], tasks: Sequence[ChunkTask], combined: bool
) -> tuple[list[Decision], list[Candidate]]:
    """A decision per candidate, and the candidate that leads each request.

    A group's leader is its most-tried row: it sets the request's attempt number and seed.
    """
    groups: dict[tuple, int] = {}
    leaders: list[Candidate] = []
    answered: set[tuple[int, str]] = set()  # (group, policy id) with a model row
    decided = []
    for candidate in candidates:
        policy_id = tasks[candidate.task].policy.id
        digest = candidate.item.content_sha256
        key = (digest,) if combined else (policy_id, digest)
        group = groups.get(key)
        if group is None:
            group = groups[key] = len(leaders)
            leaders.append(candidate)
        elif candidate.item.attempt > leaders[group].item.attempt:
            leaders[group] = candidate
        origin = ORIGIN_DUPLICATE if (group, policy_id) in answered else ORIGIN_MODEL
        answered.add((group, policy_id))
        decided.append(
            Decision(
                candidate.task,
                candidate.item,
                origin,
                group=group,
                prefilter_score=candidate.prefilter_score,
                audit=candidate.audit,
            )
        )
    return decided, leaders
