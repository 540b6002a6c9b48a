"""The ``safeguard-batch`` command line. Commands stay thin: parse options, call the library.

Nothing heavy is imported at module level, so ``safeguard-batch --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click


def parse_engine_args(pairs: tuple[str, ...]) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--engine-arg")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        extra[key.strip().replace("-", "_")] = value
    return extra


def job_input_options(input_help: str):
    """The options ``label`` and ``verify`` share: which inputs, policies and output."""

    def apply(command):
        for option in reversed(
            [
                click.option("--input", "inputs", multiple=True, required=True, help=input_help),
                click.option(
                    "--policy",
                    "policies",
                    multiple=True,
                    required=True,
                    type=click.Path(),
                    help="Policy file (Markdown with TOML front matter); repeatable.",
                ),
                click.option(
                    "--output",
                    required=True,
                    type=click.Path(file_okay=False),
                    help="Output dataset folder (Hive-partitioned by policy_id).",
                ),
                click.option("--id-column", default="id", show_default=True),
                click.option("--text-column", default="text", show_default=True),
                click.option(
                    "--on-bad-file",
                    type=click.Choice(["fail", "skip"]),
                    default="fail",
                    show_default=True,
                    help="fail: stop before any work if an input is unreadable; "
                    "skip: record it and go on.",
                ),
            ]
        ):
            command = option(command)
        return command

    return apply


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="safeguard-batch")
def cli() -> None:
    """Label Parquet content with gpt-oss-safeguard policy models on vLLM, auditably."""


@cli.command()
@job_input_options("Parquet file, directory or glob; repeatable.")
@click.option("--model", required=True, help="Local model directory (no hub downloads).")
@click.option(
    "--reasoning-effort",
    type=click.Choice(["low", "medium", "high"]),
    default="low",
    show_default=True,
    help="Harmony system reasoning effort; low is fastest.",
)
@click.option("--temperature", type=float, default=1.0, show_default=True)
@click.option("--top-p", type=float, default=1.0, show_default=True)
@click.option(
    "--max-tokens",
    type=click.IntRange(1),
    default=1024,
    show_default=True,
    help="Completion budget; a truncated analysis never reaches a verdict.",
)
@click.option(
    "--chunk-size",
    type=click.IntRange(1),
    default=1000,
    show_default=True,
    help="Rows per output file (the unit of atomic writes).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1),
    default=4096,
    show_default=True,
    help="Requests handed to the engine per generate call.",
)
@click.option("--tensor-parallel-size", type=click.IntRange(1), default=1, show_default=True)
@click.option(
    "--gpu-memory-utilization", type=click.FloatRange(0.05, 1.0), default=0.90, show_default=True
)
@click.option(
    "--max-model-len",
    type=click.IntRange(1),
    default=None,
    help="Context length; longer prompts get status too_long. Default: the model's.",
)
@click.option(
    "--max-num-seqs",
    type=click.IntRange(1),
    default=None,
    help="Sequences vLLM runs at once. Default: vLLM's.",
)
@click.option(
    "--engine-arg",
    "engine_args",
    multiple=True,
    metavar="KEY=VALUE",
    help="Any other vllm.LLM argument (VALUE parsed as JSON if it can be); repeatable.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Engine seed.")
@click.option(
    "--vocab-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder holding o200k_base.tiktoken (else $TIKTOKEN_ENCODINGS_BASE).",
)
@click.option(
    "--force", is_flag=True, help="Redo all work, even where this output already holds it."
)
@click.option(
    "--retry-failed",
    is_flag=True,
    help="Only retry rows an earlier run left as parse_error, truncated or engine_error.",
)
@click.option(
    "--max-attempts",
    type=click.IntRange(1),
    default=3,
    show_default=True,
    help="Tries per row for parse_error, truncated and engine_error (each with a fresh seed).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.option("-v", "--verbose", is_flag=True, help="Show vLLM's own log messages.")
def label(**opts: Any) -> None:
    """Label every input row under every policy."""
    from batch.label_command import run_label_command

    code = run_label_command(opts, command=["safeguard-batch", *sys.argv[1:]])
    sys.exit(code)


@cli.command("eval")
@click.option(
    "--labels",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="Output folder of a label run.",
)
@click.option(
    "--gold",
    required=True,
    type=click.Path(exists=True),
    help="Parquet file or folder with an id column and a gold 0/1 column per policy.",
)
@click.option(
    "--gold-column",
    "gold_columns",
    multiple=True,
    metavar="POLICY_ID=COLUMN",
    help="Gold column for a policy (default: the column named like the policy id).",
)
@click.option("--id-column", default="id", show_default=True)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the report as JSON.",
)
def eval_command(
    labels: str, gold: str, gold_columns: tuple[str, ...], id_column: str, json_path: str | None
) -> None:
    """Score labels against gold: precision, recall, F1, accuracy and not-ok rows per policy."""
    from batch.errors import EXIT_USAGE, JobFailure
    from batch.evaluate import evaluate, to_markdown

    mapping = {}
    for pair in gold_columns:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(
                f"{pair!r} is not POLICY_ID=COLUMN", param_hint="--gold-column"
            )
        mapping[key] = value
    try:
        report = evaluate(labels, gold, mapping, id_column)
    except ValueError as exc:
        raise JobFailure(str(exc), EXIT_USAGE) from exc
    click.echo(to_markdown(report))
    if json_path:
        from batch.write import write_json_atomic

        write_json_atomic(json_path, report)


@cli.command()
@job_input_options("The inputs the run was given; repeatable.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None)
def verify(**opts: Any) -> None:
    """Check the output holds exactly one row per (input row, policy); exit 5 if not."""
    from batch.errors import EXIT_INCOMPLETE
    from batch.job_inputs import load_policies_and_inputs
    from batch.verify import to_text
    from batch.verify import verify as check

    policies, inputs, skipped = load_policies_and_inputs(opts)
    report = check(opts["output"], inputs, policies)
    report["skipped_files"] = skipped
    for bad in skipped:
        click.echo(f"not checked (unreadable): {bad['error']}")
    click.echo(to_text(report))
    if opts["json_path"]:
        from batch.write import write_json_atomic

        write_json_atomic(opts["json_path"], report)
    if not report["complete"]:
        sys.exit(EXIT_INCOMPLETE)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="safeguard-batch")


if __name__ == "__main__":  # pragma: no cover
    main()
