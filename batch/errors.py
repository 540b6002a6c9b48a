"""Failures a user can fix, as plain exceptions that carry their exit code (docs/exit-codes.md).

The library raises these; only the command line turns them into a one-line message and an
exit status, so the library stays usable without click.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1  # policy lint found errors; policy test had failing cases
EXIT_USAGE = 2  # bad option, policy, vocabulary or model path
EXIT_BAD_INPUT = 3  # an input file is unreadable or lacks the columns
EXIT_ROWS_FAILED = 4  # the run finished but some rows ended in engine_error
EXIT_INCOMPLETE = 5  # verify: rows are missing or duplicated
EXIT_OUTPUT = 6  # the output could not be written (disk full, read-only, a file-size limit)


class SafeguardError(Exception):
    """Base of every failure reported as one line with a documented exit code."""

    exit_code = EXIT_USAGE


class UsageError(SafeguardError, ValueError):
    """A bad option, option combination or configuration file (exit 2)."""

    exit_code = EXIT_USAGE


class InputError(SafeguardError, ValueError):
    """An input that cannot be used; the message names the file (exit 3)."""

    exit_code = EXIT_BAD_INPUT


class OutputError(SafeguardError, OSError):
    """The output could not be written; the message names the path and the cause (exit 6).

    What was committed before stays; nothing half-written is visible.
    """

    exit_code = EXIT_OUTPUT
