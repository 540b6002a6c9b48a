"""The ``safeguard-batch`` group: library failures become one line and a documented exit code.

Nothing heavy is imported here or by the command modules at import time, so ``--help`` stays
fast; each command imports the library when it runs.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from batch.errors import SafeguardError


class CommandFailed(click.ClickException):
    """A :class:`SafeguardError` as click reports it: ``Error: <message>``, its exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SafeguardError as exc:
            raise CommandFailed(str(exc), exc.exit_code) from exc


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="safeguard-batch")
def cli() -> None:
    """Label Parquet content with gpt-oss-safeguard policy models on vLLM, auditably."""


def command_line() -> list[str]:
    """How this process was invoked, for the run manifest."""
    return ["safeguard-batch", *sys.argv[1:]]


def to_stderr(message: str) -> None:
    click.echo(message, err=True)


def write_json(path: str | None, data: dict[str, Any]) -> None:
    """``--json PATH``: the report as JSON, written atomically."""
    if path:
        from batch.output.write import write_json_atomic

        write_json_atomic(path, data)
