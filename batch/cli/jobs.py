"""The commands that run a job: ``label``, ``relabel`` and ``run`` (a job spec for either)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from batch.cli.base import cli, command_line, to_stderr
from batch.cli.engine_options import ENGINE_OPTIONS
from batch.cli.options import (
    PREFILTER_OPTIONS,
    RUN_OPTIONS,
    SCALE_OUT_OPTIONS,
    input_options,
    options,
)
from batch.cli.report import REPORT_OPTION, write_page

LABEL_OPTIONS = [*ENGINE_OPTIONS, *RUN_OPTIONS, *PREFILTER_OPTIONS, *SCALE_OUT_OPTIONS]

INPUT_HELP = (
    "Parquet file, directory or glob, local or on object storage (s3://bucket/prefix/, gs://, "
    "az://; credentials from the environment); repeatable."
)


def _with_report(run: Any) -> Any:
    """Run a job command, then (``--report FILE``) write the output's page, whatever the
    run's exit code: a page of a partly failed run is the one people need to see."""

    def run_then_report(params: dict[str, Any], command: list[str], job: Any) -> int:
        from batch.errors import SafeguardError

        page = params.pop("report", None)
        code = run(params, command, job)
        if page:
            try:
                write_page(params["output"], page)
            except SafeguardError as exc:  # the run's own exit code is the one that counts
                to_stderr(f"report not written: {exc}")
        return code

    return run_then_report


@_with_report
def _label(params: dict[str, Any], command: list[str], job: dict[str, Any] | None) -> int:
    from batch.job.label import run_label
    from batch.job.options import LabelOptions

    code, _ = run_label(LabelOptions(**params), command, job, say=to_stderr)
    return code


@_with_report
def _relabel(params: dict[str, Any], command: list[str], job: dict[str, Any] | None) -> int:
    from batch.job.options import LabelOptions
    from batch.job.relabel import run_relabel

    examples = params.pop("examples")
    return run_relabel(
        LabelOptions(**params), examples, command, job, say=to_stderr, show=click.echo
    )


@cli.command()
@options(input_options(INPUT_HELP))
@options(LABEL_OPTIONS)
@REPORT_OPTION
def label(**params: Any) -> None:
    """Label every input row under every policy."""
    sys.exit(_label(params, command_line(), None))


@cli.command()
@options(input_options(INPUT_HELP))
@options(LABEL_OPTIONS)
@REPORT_OPTION
@click.option(
    "--examples",
    type=click.IntRange(0),
    default=10,
    show_default=True,
    help="Flipped items to show per policy.",
)
def relabel(**params: Any) -> None:
    """Label with an edited policy, keep the old labels, and show what flips.

    Runs ``label`` (the new policy version's labels go beside the old ones, told apart by
    policy_sha256), then compares each policy's new labels with its previous version in the
    same output and writes the diff to OUT/_diffs/<run_id>.md and .json. Add --sample N to
    try the edit on N random rows first.
    """
    sys.exit(_relabel(params, command_line(), None))


@cli.command("run")
@click.argument("spec", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override one key of the spec (VALUE read as TOML if it can be); repeatable.",
)
@click.option(
    "--date",
    "run_date",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="The date that fills {date} in the spec. Default: yesterday (UTC).",
)
@click.option(
    "--dry-run", is_flag=True, help="Print the resolved spec and the equivalent command only."
)
def run_command(spec: str, overrides: tuple[str, ...], run_date: Any, dry_run: bool) -> None:
    """Run a declarative job spec (jobs/*.toml): label or relabel with its settings."""
    import shlex

    from batch.cli.spec import to_arguments
    from batch.job.spec import default_run_date, resolve

    day = run_date.date() if run_date is not None else default_run_date()
    resolved = resolve(spec, overrides, day)
    name = resolved.get("command", "label")
    if name.startswith("review-"):
        from batch.cli.review import review

        target = review.commands[name.removeprefix("review-")]
        args = to_arguments(resolved, target, spec)
        click.echo(shlex.join(["safeguard-batch", *name.split("-"), *args]))
        if not dry_run:
            target.main(args, prog_name=f"safeguard-batch {name}", standalone_mode=False)
        return
    target = relabel if name == "relabel" else label
    args = to_arguments(resolved, target, spec)
    if dry_run:
        click.echo(json.dumps(resolved, indent=2, default=str))
        click.echo(shlex.join(["safeguard-batch", name, *args]))
        return
    params = target.make_context(f"safeguard-batch {name}", args).params
    job = {"path": str(spec), "date": day.isoformat(), "set": list(overrides), "spec": resolved}
    run = _relabel if name == "relabel" else _label
    sys.exit(run(params, command_line(), job))
