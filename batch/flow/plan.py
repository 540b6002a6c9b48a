"""The plan stage: per (row, policy), a prompt and seed for the model, or a status without it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from batch.engine.base import SamplingSettings
from batch.flow.parse import PARSER_VERSION
from batch.flow.render import PromptPrefix, content_tokens
from batch.output.schema import EMPTY_INPUT, TOO_LONG

_SEED_MASK = (1 << 63) - 1
# A text with more characters than this many per context token is too long without
# tokenizing it: o200k averages ~4 characters per token, and byte-pair encoding one very long
# unbroken line (a base64 blob, a 200k-character run) takes time quadratic in its length.
MAX_CHARS_PER_TOKEN = 12


def content_sha256(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode("utf-8")).hexdigest()


def settings_sha256(reasoning_effort: str, sampling: SamplingSettings) -> str:
    """Hash of every generation setting that can change a result (parser version included)."""
    key = {
        "reasoning_effort": reasoning_effort,
        "sampling": sampling.as_dict(),
        "parser_version": PARSER_VERSION,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def request_seed(
    content_hash: str,
    policy_sha256: str,
    prompt_sha256: str,
    model_fp: str,
    settings: str,
    attempt: int = 1,
) -> int:
    """A per-request seed from everything that defines the request, so a rerun reproduces it.

    A retry (``attempt`` > 1) gets a fresh seed: the same seed would reproduce the same failure.
    """
    parts = [content_hash, policy_sha256, prompt_sha256, model_fp, settings]
    if attempt > 1:
        parts.append(f"attempt={attempt}")
    material = "|".join(parts)
    return int.from_bytes(hashlib.sha256(material.encode()).digest()[:8], "big") & _SEED_MASK


@dataclass(slots=True)
class PlannedItem:
    """One (row, policy): either a prompt for the engine or a status decided without it.

    The prompt is kept as its parts (the policy's prefix, shared, and the content's tokens,
    shared by every policy) and joined only when the engine takes it, so a planned item costs
    its content, not a copy of the policy's prefix.
    """

    row: int
    content_sha256: str | None
    attempt: int = 1
    prefix: PromptPrefix | None = None
    body: tuple[int, ...] | None = None  # the content's tokens
    seed: int | None = None
    status: str | None = None
    prompt_tokens: int | None = None
    error: str | None = None

    @property
    def prompt(self) -> list[int] | None:
        """The whole prompt's token ids (built on each call)."""
        if self.prefix is None or self.body is None:
            return None
        return self.prefix.join(self.body)


def plan_policy(
    texts: Sequence[str | None],
    hashes: Sequence[str | None],
    prefix: PromptPrefix,
    policy_sha256: str,
    model_fp: str,
    settings: str,
    max_tokens: int,
    max_model_len: int | None,
    rows: dict[int, int] | None = None,
) -> list[PlannedItem]:
    """Render prompts for one policy; empty and over-long items get a status instead.

    ``rows`` maps the row indexes to plan to their attempt number (default: every row, first
    attempt).
    """
    planned = []
    todo = rows if rows is not None else dict.fromkeys(range(len(texts)), 1)
    for row, attempt in todo.items():
        text, digest = texts[row], hashes[row]
        if text is None or not text.strip():
            planned.append(PlannedItem(row, digest, attempt, status=EMPTY_INPUT))
            continue
        if max_model_len is not None and len(text) > MAX_CHARS_PER_TOKEN * max_model_len:
            reason = (
                f"text of {len(text)} characters is over {MAX_CHARS_PER_TOKEN} x "
                f"max_model_len {max_model_len} (not tokenized)"
            )
            planned.append(PlannedItem(row, digest, attempt, status=TOO_LONG, error=reason))
            continue
        body = content_tokens(text)
        length = prefix.length + len(body)
        if max_model_len is not None and length + max_tokens > max_model_len:
            reason = (
                f"prompt of {length} tokens + max_tokens {max_tokens} exceeds "
                f"max_model_len {max_model_len}"
            )
            item = PlannedItem(row, digest, attempt, status=TOO_LONG, prompt_tokens=length)
            item.error = reason
            planned.append(item)
            continue
        seed = request_seed(digest, policy_sha256, prefix.sha256, model_fp, settings, attempt)
        planned.append(PlannedItem(row, digest, attempt, prefix, body, seed, prompt_tokens=length))
    return planned
