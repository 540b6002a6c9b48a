"""Exit codes and the one-line failures the CLI reports (README: "Exit codes")."""

from __future__ import annotations

import click

EXIT_OK = 0
EXIT_USAGE = 2  # bad option, policy, vocabulary or model path
EXIT_BAD_INPUT = 3  # an input file is unreadable or lacks the columns
EXIT_ROWS_FAILED = 4  # the run finished but some rows ended in engine_error
EXIT_INCOMPLETE = 5  # verify: rows are missing or duplicated


class JobFailure(click.ClickException):
    """A failure the user can fix, reported as one line with a documented exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
