"""``compact`` and ``migrate``: keeping an output table healthy."""

from __future__ import annotations

import json

import click

from batch.cli.base import cli
from batch.cli.options import Finite, TableLocation
from batch.job.options import MAX_VACUUM_HOURS


@cli.command()
@click.argument("output", type=TableLocation(exists=True))
@click.option(
    "--target-rows",
    type=click.IntRange(1000),
    default=1_000_000,
    show_default=True,
    help="About how many rows a file holds afterwards.",
)
@click.option(
    "--cluster",
    is_flag=True,
    help="Also sort by source file and row (rewrites every file), so reading one input "
    "file's labels touches few table files.",
)
@click.option(
    "--vacuum",
    "vacuum_hours",
    type=Finite(0, MAX_VACUUM_HOURS),
    default=None,
    metavar="HOURS",
    help="Then delete data files that no table version younger than HOURS needs (time "
    "travel to older versions ends there; a fraction of an hour is rounded up).",
)
def compact(output: str, target_rows: int, cluster: bool, vacuum_hours: float | None) -> None:
    """Rewrite the table's small files into large ones; optionally vacuum old versions."""
    from batch.job.maintenance import compact as run

    click.echo(json.dumps(run(output, target_rows, cluster, vacuum_hours), indent=2))


@cli.command()
@click.argument("output", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--source-root",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="The folder that holds every input the old output was made from: row identities "
    "become paths relative to it (pass the same --source-root to later runs).",
)
def migrate(output: str, source_root: str) -> None:
    """Turn an output of the old chunk-file layout into a table (old files go to _legacy/)."""
    from batch.job.maintenance import migrate as run

    click.echo(json.dumps(run(output, source_root), indent=2))
