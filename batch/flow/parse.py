"""The parse stage: completion tokens → verdict. Every outcome is a status; nothing here raises
on model output."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from batch.output.schema import OK, PARSE_ERROR, TRUNCATED

# Bump when parsing rules change: it is part of every result's cache key.
PARSER_VERSION = "1"

_CODE_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)
_BINARY = re.compile(r"^[\s`'\"*]*([01])[\s`'\".*]*$")


@dataclass(slots=True)  # one per answer: not frozen, whose init costs 5x (never mutated)
class Verdict:
    """What one completion says, or why it says nothing usable."""

    status: str
    label: str | None = None
    violation: bool | None = None
    policy_category: str | None = None
    rationale: str | None = None
    reasoning: str | None = None
    error: str | None = None


def parse_binary(text: str) -> tuple[str, None, None]:
    """A single ``0`` or ``1`` (tolerating whitespace, quotes, backticks and a full stop)."""
    match = _BINARY.match(text)
    if not match:
        raise ValueError(f"expected a single 0 or 1, got {text[:80]!r}")
    return match.group(1), None, None


def strip_code_fence(text: str) -> str:
    """The text inside a Markdown code fence (```json ... ```), or the text itself."""
    stripped = text.strip()
    fenced = _CODE_FENCE.match(stripped)
    return fenced.group(1) if fenced else stripped


def parse_json(text: str) -> tuple[str, str | None, str | None]:
    """``{"violation": 0|1, "policy_category": ..., "rationale": ...}``, optionally fenced."""
    stripped = strip_code_fence(text)
    try:
        obj = json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise ValueError(f"final answer is not JSON ({exc.msg}): {text[:80]!r}") from None
    if not isinstance(obj, dict) or "violation" not in obj:
        raise ValueError(f"JSON answer lacks 'violation': {text[:80]!r}")
    raw = obj["violation"]
    if isinstance(raw, bool):
        label = "1" if raw else "0"
    elif raw in (0, 1) or raw in ("0", "1"):
        label = str(int(raw))
    else:
        raise ValueError(f"'violation' must be 0 or 1, got {raw!r}")
    category = obj.get("policy_category")
    rationale = obj.get("rationale")
    return (
        label,
        None if category is None else str(category),
        None if rationale is None else str(rationale),
    )


FORMAT_PARSERS = {"binary": parse_binary, "json": parse_json}


def _texts(messages: list, channel: str) -> list[str]:
    return [
        "".join(getattr(part, "text", "") for part in m.content)
        for m in messages
        if m.channel == channel
    ]


def _parse_complete_messages(encoding, tokens: list[int]) -> list:
    """Parse only the messages closed by ``<|end|>``; [] if even that fails."""
    from openai_harmony import HarmonyError, Role

    end = encoding.encode("<|end|>", allowed_special="all")[0]
    if end not in tokens:
        return []
    last = len(tokens) - 1 - tokens[::-1].index(end)
    try:
        return encoding.parse_messages_from_completion_tokens(
            tokens[: last + 1], Role.ASSISTANT, strict=False
        )
    except HarmonyError:
        return []


_FIRST_SPECIAL = 199998  # o200k_harmony: every id from here on is a special token
_CHANNEL, _MESSAGE, _END, _START, _RETURN = 200005, 200008, 200007, 200006, 200002
_PLAIN_CHANNELS = ("analysis", "final")
# The usual spellings as o200k tokens, compared before falling back to decoding.
_KNOWN_HEADERS = {(35644,): "analysis", (17196,): "final", (173781,): "assistant"}


def _find(tokens: list[int], token: int, start: int) -> int | None:
    try:
        return tokens.index(token, start)
    except ValueError:
        return None


def _fast_messages(encoding, tokens: list[int]) -> list[tuple[str, str]] | None:
    """The common, well-formed answer without harmony's general parser (which costs ~0.5 ms).

    Accepts only ``<|channel|>NAME<|message|>TEXT<|end|>`` messages (later ones opened by
    ``<|start|>assistant``), NAME ``analysis`` or ``final``, the last one closed by
    ``<|return|>``, with no special token inside TEXT; anything else returns None and goes
    to harmony. ``tests/test_parse.py`` checks that both give the same result.
    """
    messages: list[tuple[str, str]] = []
    i, n = 0, len(tokens)
    while i < n:
        if messages:
            if tokens[i] != _START:
                return None
            j = _find(tokens, _CHANNEL, i + 1)
            if j is None:
                return None
            role = tokens[i + 1 : j]
            if (_KNOWN_HEADERS.get(tuple(role)) or encoding.decode(role)) != "assistant":
                return None
            i = j
        if tokens[i] != _CHANNEL:
            return None
        k = _find(tokens, _MESSAGE, i + 1)
        if k is None:
            return None
        header = tuple(tokens[i + 1 : k])
        channel = _KNOWN_HEADERS.get(header)
        if channel is None:
            if any(t >= _FIRST_SPECIAL for t in header):
                return None
            channel = encoding.decode(list(header))
        if channel not in _PLAIN_CHANNELS:
            return None
        end = k + 1
        while end < n and tokens[end] < _FIRST_SPECIAL:
            end += 1
        if end == n or tokens[end] not in (_END, _RETURN):
            return None
        try:
            text = encoding.decode_utf8(tokens[k + 1 : end])
        except Exception:  # noqa: BLE001 - invalid UTF-8 and the like: harmony decides
            return None
        messages.append((channel, text))
        i = end + 1
        if tokens[end] == _RETURN:
            return messages if i == n else None
    return None


def read_completion(
    token_ids: Sequence[int], finish_reason: str | None
) -> Verdict | tuple[str, str | None]:
    """Harmony messages from completion tokens: ``(final text, reasoning)``, or a failed verdict."""
    from batch.vocab import load_encoding

    encoding = load_encoding()
    tokens = list(token_ids)
    if finish_reason != "length":
        fast = _fast_messages(encoding, tokens)
        if fast is not None:
            analysis = [text for channel, text in fast if channel == "analysis"]
            finals = [text for channel, text in fast if channel == "final"]
            reasoning = "\n".join(analysis) if analysis else None
            if not finals:
                return Verdict(PARSE_ERROR, reasoning=reasoning, error="no final-channel message")
            return finals[-1], reasoning
    from openai_harmony import HarmonyError, Role

    try:
        messages = encoding.parse_messages_from_completion_tokens(
            tokens, Role.ASSISTANT, strict=False
        )
    except HarmonyError as exc:
        status = TRUNCATED if finish_reason == "length" else PARSE_ERROR
        # Keep whatever complete messages came before the damage, for the reasoning column.
        salvaged = _parse_complete_messages(encoding, tokens)
        reasoning = "\n".join(_texts(salvaged, "analysis")) or None
        return Verdict(
            status, reasoning=reasoning, error=f"harmony could not parse the completion: {exc}"
        )

    analysis = _texts(messages, "analysis")
    finals = _texts(messages, "final")
    reasoning = "\n".join(analysis) if analysis else None
    if finish_reason == "length":
        return Verdict(
            TRUNCATED,
            reasoning=reasoning,
            error="hit max_tokens before the answer was complete",
        )
    if not finals:
        return Verdict(PARSE_ERROR, reasoning=reasoning, error="no final-channel message")
    return finals[-1], reasoning


def verdict_from_final(final: str, reasoning: str | None, output_format: str) -> Verdict:
    """Read the verdict from final-channel text in a policy's output format."""
    try:
        label, category, rationale = FORMAT_PARSERS[output_format](final)
    except ValueError as exc:
        return Verdict(PARSE_ERROR, reasoning=reasoning, error=str(exc))
    return Verdict(
        OK,
        label=label,
        violation=label == "1",
        policy_category=category,
        rationale=rationale,
        reasoning=reasoning,
    )


def parse_completion(
    token_ids: Sequence[int], finish_reason: str | None, output_format: str
) -> Verdict:
    """Read harmony messages from completion tokens and the verdict from the final channel."""
    read = read_completion(token_ids, finish_reason)
    if isinstance(read, Verdict):
        return read
    final, reasoning = read
    return verdict_from_final(final, reasoning, output_format)
