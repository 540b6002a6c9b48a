"""KEY=VALUE pairs from the command line and job specs (``--engine-arg``, ``--gold-column``,
``--old-where``, ``--set``), parsed one way."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from batch.errors import UsageError


def split_pair(pair: str, what: str = "KEY=VALUE") -> tuple[str, str]:
    """``"a=b"`` → ``("a", "b")``; a missing ``=`` or key is a :class:`UsageError`."""
    key, sep, value = pair.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"{pair!r} is not {what}")
    return key.strip(), value


def parse_pairs(pairs: Iterable[str], what: str = "KEY=VALUE") -> dict[str, str]:
    return dict(split_pair(pair, what) for pair in pairs)


def parse_engine_args(pairs: Iterable[str]) -> dict[str, Any]:
    """``--engine-arg`` values: VALUE read as JSON when it can be; ``-`` in a KEY becomes ``_``."""
    extra: dict[str, Any] = {}
    for key, raw in parse_pairs(pairs, "KEY=VALUE (--engine-arg)").items():
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        extra[key.replace("-", "_")] = value
    return extra
