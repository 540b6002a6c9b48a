"""Declarative jobs: a TOML file holds a ``label`` (or ``relabel``) command's options.

Keys are the command's option names with ``_`` for ``-`` (``inputs``, ``policies``,
``output``, ``model``, ``reasoning_effort``, ``max_tokens``...); an ``[engine_args]`` table
becomes ``--engine-arg`` pairs and ``command`` picks ``label`` (default) or ``relabel``.
``{date}`` anywhere in a string is replaced by the run date (``run --date``, default
yesterday in UTC), so a nightly job names the day's partition. ``--set key=value`` overrides
one key (the value read as TOML if it can be, e.g. ``--set max_tokens=512`` or
``--set 'inputs=["a/", "b/"]'``, else as a string; ``engine_args.KEY=VALUE`` for a table
entry; ``--set key=`` removes the key). The command line then checks the options with the
command's own parser (``batch.cli.spec``), so a spec gets exactly the validation and defaults
the command line gets.
"""

from __future__ import annotations

import copy
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from batch.errors import UsageError
from batch.job.pairs import split_pair

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

COMMANDS = ("label", "relabel", "review-export", "review-import")


class JobSpecError(UsageError):
    """A job spec that cannot be run; the message names the file and the key."""


def default_run_date(now: datetime | None = None) -> date:
    """Yesterday in UTC: a nightly job labels the day that has just ended."""
    return ((now or datetime.now(timezone.utc)) - timedelta(days=1)).date()


def load_spec(path: str | Path) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise JobSpecError(f"{path}: cannot read job spec: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise JobSpecError(f"{path}: not valid TOML: {exc}") from exc


def _parse_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        return raw


def apply_overrides(spec: dict[str, Any], pairs: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """A copy of ``spec`` with each ``key=value`` (``table.key=value`` for a table) applied."""
    spec = copy.deepcopy(spec)
    for pair in pairs:
        try:
            key, raw = split_pair(pair)
        except UsageError as exc:
            raise JobSpecError(f"--set {exc}") from exc
        target = spec
        *tables, leaf = key.split(".")
        for table in tables:
            target = target.setdefault(table, {})
            if not isinstance(target, dict):
                raise JobSpecError(f"--set {pair!r}: {table!r} is not a table")
        if raw == "":
            target.pop(leaf, None)  # `--set key=` removes the key: the option's default applies
        else:
            target[leaf] = _parse_value(raw)
    return spec


def substitute(value: Any, variables: dict[str, str]) -> Any:
    """Replace ``{name}`` in every string of a spec (other braces are left alone)."""
    if isinstance(value, str):
        for name, replacement in variables.items():
            value = value.replace("{" + name + "}", replacement)
        return value
    if isinstance(value, list):
        return [substitute(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, variables) for k, v in value.items()}
    return value


def resolve(
    path: str | Path,
    overrides: tuple[str, ...] | list[str],
    run_date: date,
) -> dict[str, Any]:
    """The spec as it will run: overrides applied, ``{date}`` filled in."""
    spec = apply_overrides(load_spec(path), overrides)
    command = spec.get("command", "label")
    if command not in COMMANDS:
        raise JobSpecError(f"{path}: command must be one of {', '.join(COMMANDS)}")
    return substitute(spec, {"date": run_date.isoformat()})
