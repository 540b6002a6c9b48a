"""``report``: one self-contained HTML page per output, and the ``--report`` of job commands."""

from __future__ import annotations

from typing import Any

import click

from batch.cli.base import cli, write_json
from batch.cli.options import GOLD_COLUMN_OPTION, ID_COLUMN_OPTION, JSON_OPTION, TableLocation

DEFAULT_PAGE = "_report.html"  # beside the table, under a name table readers ignore

REPORT_OPTION = click.option(
    "--report",
    type=click.Path(dir_okay=False),
    default=None,
    help="At the end, write the output's HTML report to this file (see 'report').",
)


def write_page(
    output: str, html_path: str | None, gold: str | None = None, **options: Any
) -> dict[str, Any]:
    """Build the page for ``output``, write it (default: beside the table) and say where."""
    from batch.output import place
    from batch.reports.html.page import write_report

    path = html_path or place.join(output, DEFAULT_PAGE)
    data = write_report(output, path, gold, **options)
    click.echo(f"report written to {path} ({place.size(path) / 1024:,.0f} KiB)", err=True)
    return data


@cli.command()
@click.argument("output", type=TableLocation(exists=True))
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False),
    default=None,
    help=f"Where to write the page. Default: OUTPUT/{DEFAULT_PAGE}.",
)
@click.option(
    "--gold",
    type=click.Path(exists=True),
    default=None,
    help="Also score the labels against this gold Parquet file or folder (as 'eval').",
)
@GOLD_COLUMN_OPTION
@ID_COLUMN_OPTION
@click.option(
    "--threshold",
    type=click.FloatRange(0.0, 1.0),
    default=0.5,
    show_default=True,
    help="The score the 'most uncertain' examples are nearest to, marked on the histogram.",
)
@JSON_OPTION
def report(
    output: str,
    html_path: str | None,
    gold: str | None,
    gold_columns: tuple[str, ...],
    id_column: str,
    threshold: float,
    json_path: str | None,
) -> None:
    """Write one self-contained HTML page about an output: per policy its rows, violation
    rate, statuses, label origins, prefilter routing, score histogram, example rows with
    their text and rationale, and trend; what the last run changed; per run its tokens,
    throughput and engine time; relabel flips with examples; eval against gold if given.

    The page needs no network and no script: it opens on an air-gapped laptop.
    """
    from batch.job.pairs import parse_pairs

    mapping = parse_pairs(gold_columns, "POLICY_ID=COLUMN (--gold-column)")
    data = write_page(
        output, html_path, gold, gold_columns=mapping or None, id_column=id_column,
        threshold=threshold,
    )  # fmt: skip
    write_json(json_path, data)
