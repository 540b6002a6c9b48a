"""The ``safeguard-batch`` command line: one small module per command group.

Commands parse options into the typed options of ``batch.job`` and call one library function;
library failures carry their exit codes (``batch.errors``) and ``base.Group`` reports them.
"""

from batch.cli import model, policy, prefilter, report, reports, review, table  # noqa: F401
from batch.cli.base import cli
from batch.cli.jobs import label, relabel

__all__ = ["cli", "label", "main", "relabel"]


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="safeguard-batch")
