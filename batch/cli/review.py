"""``review export`` and ``review import``: the human review loop around a label table."""

from __future__ import annotations

import click

from batch.cli.base import cli, write_json
from batch.cli.options import JSON_OPTION, Finite, TableLocation


@cli.group()
def review() -> None:
    """Choose labels for human review, and turn reviewers' decisions into gold."""


@review.command("export")
@click.option("--labels", required=True, type=TableLocation(exists=True),
              help="The label table to review.")  # fmt: skip
@click.option(
    "--select",
    multiple=True,
    required=True,
    metavar="MODE[:N]",
    help="uncertain (score nearest --threshold), disputed (label differs from --against), "
    "failed, prefilter-audit (the model flagged what the prefilter passed), sample (seeded); "
    "N rows per policy (default --limit). Repeatable.",
)
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True,
              help="Rows per policy for each --select without its own N.")  # fmt: skip
@click.option("--policy", "policies", multiple=True, help="Only these policy ids (repeatable).")
@click.option("--threshold", type=Finite(min=0.0, max=1.0), default=0.5, show_default=True,
              help="The operating point 'uncertain' measures distance from.")  # fmt: skip
@click.option("--against", type=click.Path(exists=True, file_okay=False), default=None,
              help="disputed: another label table (e.g. a relabel candidate).")  # fmt: skip
@click.option("--against-version", type=click.IntRange(0), default=None,
              help="disputed: an earlier version of OUTPUT (or of --against).")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True, help="For 'sample'.")
@click.option("--text-column", default="text", show_default=True,
              help="The source files' text column, read back for the reviewer.")  # fmt: skip
@click.option(
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="The review file: .parquet, .csv, or .json (Label Studio tasks, with the model's "
    "verdict as a pre-annotation; the labelling config is written beside it).",
)
def export_command(
    labels: str,
    select: tuple[str, ...],
    limit: int,
    policies: tuple[str, ...],
    threshold: float,
    against: str | None,
    against_version: int | None,
    seed: int,
    text_column: str,
    output: str,
) -> None:
    """Write labels for human review, with a blank decision column."""
    from batch.reports.review.export import Selection, select_for_review, with_texts
    from batch.reports.review.files import review_format, write_review

    review_format(output)  # a wrong extension fails before any work
    chosen = [Selection.parse(text, limit) for text in select]
    rows = select_for_review(labels, chosen, policies, threshold, against, against_version, seed)
    rows, changed = with_texts(rows, text_column)
    write_review(rows, output)
    counts = rows.group_by("reason").len().sort("reason").iter_rows()
    summary = ", ".join(f"{reason} {count}" for reason, count in counts) or "none"
    click.echo(f"{len(rows)} rows to review written to {output} ({summary})", err=True)
    if changed:
        click.echo(
            f"{changed} rows left out: their source text changed since they were labelled "
            "(relabel them, then export again)",
            err=True,
        )


@review.command("import")
@click.argument("review_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--labels", required=True, type=TableLocation(exists=True),
              help="The label table reviewed (its ids and policies are checked).")  # fmt: skip
@click.option("--output", required=True, type=click.Path(dir_okay=False),
              help="The gold Parquet file: id and a 0/1 column per policy id.")  # fmt: skip
@click.option("--tests", type=click.Path(file_okay=False), default=None,
              help="Also write POLICY.tests.toml here: [[tests]] cases per policy.")  # fmt: skip
@JSON_OPTION
def import_command(
    review_file: str, labels: str, output: str, tests: str | None, json_path: str | None
) -> None:
    """Read decisions back (CSV, Parquet, or a Label Studio JSON export) and write gold."""
    from pathlib import Path

    from batch.output.write import write_text_atomic
    from batch.reports.review.imports import (
        gold_table,
        import_summary,
        policy_tests,
        validated_decisions,
    )

    decided, blank = validated_decisions(review_file, labels)
    gold = gold_table(decided)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    gold.write_parquet(output)
    if tests:
        for policy_id in sorted(decided["policy_id"].unique().to_list()):
            path = Path(tests) / f"{policy_id}.tests.toml"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path, policy_tests(decided, policy_id))
    summary = import_summary(decided, blank)
    click.echo(
        f"{summary['decided']} decisions ({blank} left blank) written to {output}: "
        + ", ".join(
            f"{p} {c['decided']} ({c['violating']} violating)"
            for p, c in summary["per_policy"].items()
        ),  # fmt: skip
        err=True,
    )
    write_json(json_path, summary)
