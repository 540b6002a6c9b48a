"""Prefilter routing: items a cheap classifier scores below its threshold get label 0 without
a request; a reproducible share of them (``--audit-rate``) goes to the model anyway, so the
prefilter's miss rate is measured. An item whose score is not a finite number goes to the
model."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from batch.flow.decide import Candidate, Decision
from batch.flow.todo import ChunkTask
from batch.output.schema import ORIGIN_PREFILTER

if TYPE_CHECKING:  # pragma: no cover
    from batch.prefilter.model import Prefilter


def audit_pick(content_sha256: str | None, policy_sha256: str, rate: float) -> bool:
    """Whether a prefiltered item is audited: a reproducible draw from its content hash."""
    if rate <= 0 or content_sha256 is None:
        return False
    digest = hashlib.sha256(f"audit|{policy_sha256}|{content_sha256}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def route(
    candidates: list[Candidate],
    tasks: Sequence[ChunkTask],
    prefilters: dict[str, Prefilter],
    audit_rate: float,
) -> tuple[list[Decision], list[Candidate]]:
    """Score what would go to the model; below the threshold, decide 0 (or audit it)."""
    decided: list[Decision] = []
    prefiltered: set[int] = set()
    for policy_id, prefilter in prefilters.items():
        mine = [c for c in candidates if tasks[c.task].policy.id == policy_id]
        if not mine:
            continue
        texts = [tasks[c.task].chunk.texts[c.item.row] or "" for c in mine]
        policy_sha = tasks[mine[0].task].policy.sha256
        for candidate, score in zip(mine, prefilter.scores(texts), strict=True):
            if not math.isfinite(score):  # a score that says nothing never decides a row
                continue
            candidate.prefilter_score = float(score)
            if score >= prefilter.threshold:
                continue
            if audit_pick(candidate.item.content_sha256, policy_sha, audit_rate):
                candidate.audit = True
                continue
            prefiltered.add(id(candidate))
            decided.append(
                Decision(
                    candidate.task,
                    candidate.item,
                    ORIGIN_PREFILTER,
                    prefilter_score=candidate.prefilter_score,
                )
            )
    return decided, [c for c in candidates if id(c) not in prefiltered]
