"""``verify``, ``diff`` and ``eval``: reports over an output folder."""

from __future__ import annotations

import sys
from typing import Any

import click

from batch.cli.base import cli, write_json
from batch.cli.options import (
    GOLD_COLUMN_OPTION,
    ID_COLUMN_OPTION,
    JSON_OPTION,
    Finite,
    TableLocation,
    input_options,
    options,
)


@cli.command()
@options(input_options("The inputs the run was given; repeatable."))
@JSON_OPTION
def verify(json_path: str | None, **params: Any) -> None:
    """Check the output holds exactly one row per (input row, policy); exit 5 if not."""
    from batch.errors import EXIT_INCOMPLETE
    from batch.job.options import InputOptions
    from batch.job.verify import verify_output
    from batch.reports.verify import to_text

    report = verify_output(InputOptions(**params))
    for bad in report["skipped_files"]:
        click.echo(f"not checked (unreadable): {bad['error']}")
    click.echo(to_text(report))
    write_json(json_path, report)
    if not report["complete"]:
        sys.exit(EXIT_INCOMPLETE)


@cli.command()
@click.argument("old", type=TableLocation(exists=True))
@click.argument("new", type=TableLocation(exists=True))
@click.option(
    "--old-where",
    multiple=True,
    metavar="COLUMN=VALUE",
    help="Narrow OLD, e.g. policy_sha256=<prefix>, policy_version=2, model=..., run_id=...; "
    "repeatable.",
)
@click.option("--new-where", multiple=True, metavar="COLUMN=VALUE", help="Narrow NEW, likewise.")
@click.option(
    "--old-version",
    type=click.IntRange(0),
    default=None,
    help="Read OLD as it was at this table version (time travel). Default: its current one.",
)
@click.option("--new-version", type=click.IntRange(0), default=None, help="Likewise for NEW.")
@click.option("--policy", "policy_id", default=None, help="Only this policy id.")
@click.option(
    "--on",
    type=click.Choice(["source", "id", "content"]),
    default="source",
    show_default=True,
    help="Match rows by source file and row, by id, or by content hash.",
)
@click.option(
    "--examples",
    type=click.IntRange(0),
    default=10,
    show_default=True,
    help="Flipped items to show per policy (a seeded random sample).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--text-column",
    default="text",
    show_default=True,
    help="Show each example's text from its source file ('' to leave it out).",
)
@JSON_OPTION
@click.option(
    "--markdown",
    "markdown_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the Markdown report to this file.",
)
def diff(
    old: str,
    new: str,
    old_where: tuple[str, ...],
    new_where: tuple[str, ...],
    old_version: int | None,
    new_version: int | None,
    policy_id: str | None,
    on: str,
    examples: int,
    seed: int,
    text_column: str,
    json_path: str | None,
    markdown_path: str | None,
) -> None:
    """Compare two label sets: flip matrix, flip rate with a 95% interval, flipped samples.

    OLD and NEW are output tables or candidate tables (OUT/_candidates/<id>); the same table
    twice compares two of its versions (--old-version) or two slices (--old-where).
    """
    from batch.job.pairs import parse_pairs
    from batch.reports.diff.compare import LabelSet, diff_outputs
    from batch.reports.diff.markdown import to_markdown

    olds = parse_pairs(old_where, "COLUMN=VALUE (--old-where)")
    news = parse_pairs(new_where, "COLUMN=VALUE (--new-where)")
    if policy_id:
        olds["policy_id"] = news["policy_id"] = policy_id
    report = diff_outputs(
        LabelSet(old, olds, old_version),
        LabelSet(new, news, new_version),
        on,
        examples,
        seed,
        text_column or None,
    )
    text = to_markdown(report)
    click.echo(text)
    write_json(json_path, report)
    if markdown_path:
        from batch.output.write import write_text_atomic

        write_text_atomic(markdown_path, text)


@cli.command("eval")
@click.option(
    "--labels",
    required=True,
    type=TableLocation(exists=True),
    help="Output folder of a label run.",
)
@click.option(
    "--gold",
    required=True,
    type=click.Path(exists=True),
    help="Parquet file or folder with an id column and a gold 0/1 column per policy.",
)
@GOLD_COLUMN_OPTION
@ID_COLUMN_OPTION
@JSON_OPTION
@click.option(
    "--png",
    "png_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also draw the confusion matrices and a precision/recall chart (needs matplotlib).",
)
@click.option(
    "--bootstrap",
    "resamples",
    type=click.IntRange(0),
    default=1000,
    show_default=True,
    help="Bootstrap resamples for the 95% intervals (0: none).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap seed.")
@click.option(
    "--target-recall",
    type=Finite(min=0.0, max=1.0),
    default=None,
    help="Report the highest score threshold whose recall reaches this (e.g. 0.95).",
)
@click.option(
    "--target-precision",
    type=Finite(min=0.0, max=1.0),
    default=None,
    help="Report the lowest score threshold whose precision reaches this.",
)
def eval_command(
    labels: str,
    gold: str,
    gold_columns: tuple[str, ...],
    id_column: str,
    json_path: str | None,
    png_path: str | None,
    resamples: int,
    seed: int,
    target_recall: float | None,
    target_precision: float | None,
) -> None:
    """Score labels against gold: precision, recall, F1, accuracy and not-ok rows per policy,
    and where labels have a score, ROC AUC, PR AUC and calibration (ECE).

    Each policy is matched with the gold column of the same name (or one differing only in
    case, so policy s meets column S), unless --gold-column says otherwise.
    """
    if target_recall is not None and target_precision is not None:
        raise click.UsageError("give --target-recall or --target-precision, not both")
    from batch.job.pairs import parse_pairs
    from batch.reports.evaluation.evaluate import evaluate
    from batch.reports.evaluation.render import to_markdown, to_png

    mapping = parse_pairs(gold_columns, "POLICY_ID=COLUMN (--gold-column)")
    targets = (target_recall, target_precision)
    report = evaluate(labels, gold, mapping, id_column, resamples, seed, targets)
    if png_path:
        to_png(report, png_path)
    click.echo(to_markdown(report))
    write_json(json_path, report)
