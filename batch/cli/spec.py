"""A job spec as the command-line arguments it stands for, checked by the command's own parser."""

from __future__ import annotations

import json
from typing import Any

import click

from batch.job.spec import JobSpecError

# Spec keys whose option name differs from the key (the option is repeatable).
_OPTION_NAMES = {"inputs": "--input", "policies": "--policy", "engine_args": "--engine-arg"}


def _flag(option: click.Option, key: str, value: Any, where: str) -> list[str]:
    """A boolean spec value as ``--flag`` (or nothing), or ``--x``/``--no-x``."""
    if not isinstance(value, bool):
        raise JobSpecError(f"{where}: {key} must be true or false")
    name = max(option.opts, key=len)
    if not option.secondary_opts:
        return [name] if value else []
    return [name if value else max(option.secondary_opts, key=len)]


def _json(value: Any, where: str) -> str:
    """An engine argument as JSON; TOML has values JSON has not (dates, times): refused."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        raise JobSpecError(
            f"{where}: a TOML {type(value).__name__} is not a value an engine argument can "
            "take (strings, numbers, booleans, arrays and tables are)"
        ) from None


def to_arguments(spec: dict[str, Any], command: click.Command, where: str) -> list[str]:
    """The command-line arguments that a spec stands for, checked against ``command``."""
    options = {
        p.name: p for p in command.params if isinstance(p, click.Option) and p.name is not None
    }
    positional = {p.name for p in command.params if isinstance(p, click.Argument)}
    args: list[str] = []
    arguments: list[str] = []  # a command's positional arguments, named by their key
    for key, value in spec.items():
        if key == "command":
            continue
        name = key.replace("-", "_")
        if name in positional:
            arguments.append(str(value))
            continue
        option = options.get(name)
        if option is None:
            known = ", ".join(sorted({*positional, *(k for k in options if k != "help")}))
            raise JobSpecError(f"{where}: unknown key {key!r} (known: command, {known})")
        if name == "engine_args":
            if not isinstance(value, dict):
                raise JobSpecError(f"{where}: engine_args must be a table")
            for k, v in value.items():
                args += ["--engine-arg", f"{k}={_json(v, f'{where}: engine_args.{k}')}"]
            continue
        if option.is_flag:
            args += _flag(option, key, value, where)
            continue
        flag = _OPTION_NAMES.get(name) or max(option.opts, key=len)
        values = value if option.multiple and isinstance(value, list) else [value]
        for item in values:
            if isinstance(item, dict | list):
                raise JobSpecError(f"{where}: {key} must be a value, not {type(item).__name__}")
            args += [flag, str(item)]
    return arguments + args
