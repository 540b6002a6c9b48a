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


# Model, generation and engine options: the same for label, relabel and policy test.
_ENGINE_OPTIONS = [
    click.option("--model", required=True, help="Local model directory (no hub downloads)."),
    click.option(
        "--reasoning-effort",
        type=click.Choice(["low", "medium", "high"]),
        default="low",
        show_default=True,
        help="Harmony system reasoning effort; low is fastest.",
    ),
    click.option("--temperature", type=float, default=1.0, show_default=True),
    click.option("--top-p", type=float, default=1.0, show_default=True),
    click.option(
        "--max-tokens",
        type=click.IntRange(1),
        default=1024,
        show_default=True,
        help="Completion budget; a truncated analysis never reaches a verdict.",
    ),
    click.option("--tensor-parallel-size", type=click.IntRange(1), default=1, show_default=True),
    click.option(
        "--gpu-memory-utilization",
        type=click.FloatRange(0.05, 1.0),
        default=0.90,
        show_default=True,
    ),
    click.option(
        "--max-model-len",
        type=click.IntRange(1),
        default=None,
        help="Context length; longer prompts get status too_long. Default: the model's.",
    ),
    click.option(
        "--engine-arg",
        "engine_args",
        multiple=True,
        metavar="KEY=VALUE",
        help="Any other vllm.LLM argument (VALUE parsed as JSON if it can be); repeatable.",
    ),
    click.option(
        "--vocab-dir",
        type=click.Path(file_okay=False),
        default=None,
        help="Folder holding o200k_base.tiktoken (else $TIKTOKEN_ENCODINGS_BASE).",
    ),
    click.option("-v", "--verbose", is_flag=True, help="Show vLLM's own log messages."),
]

_LABEL_OPTIONS = [
    *_ENGINE_OPTIONS,
    click.option(
        "--chunk-size",
        type=click.IntRange(1),
        default=1000,
        show_default=True,
        help="Rows per output file (the unit of atomic writes).",
    ),
    click.option(
        "--batch-size",
        type=click.IntRange(1),
        default=4096,
        show_default=True,
        help="Requests handed to the engine per generate call.",
    ),
    click.option(
        "--max-num-seqs",
        type=click.IntRange(1),
        default=None,
        help="Sequences vLLM runs at once. Default: vLLM's.",
    ),
    click.option("--seed", type=int, default=0, show_default=True, help="Engine seed."),
    click.option(
        "--force", is_flag=True, help="Redo all work, even where this output already holds it."
    ),
    click.option(
        "--retry-failed",
        is_flag=True,
        help="Only retry rows an earlier run left as parse_error, truncated or engine_error.",
    ),
    click.option(
        "--max-attempts",
        type=click.IntRange(1),
        default=3,
        show_default=True,
        help="Tries per row for parse_error, truncated and engine_error (each with a fresh seed).",
    ),
    click.option(
        "--multi-policy",
        type=click.Choice(["separate", "combined"]),
        default="separate",
        show_default=True,
        help="separate: one request per item and policy (most accurate); combined: one request "
        "per item for all policies (cheaper, a little less accurate).",
    ),
    click.option(
        "--reuse/--no-reuse",
        default=True,
        show_default=True,
        help="Carry over identical earlier labels (same content, policy, prompt, model and "
        "settings) found in the output instead of asking the model again.",
    ),
    click.option(
        "--sample",
        type=click.IntRange(1),
        default=None,
        help="Label only N input rows, drawn at random and reproducibly (see --sample-seed).",
    ),
    click.option("--sample-seed", type=int, default=0, show_default=True),
    click.option(
        "--prefilter",
        "prefilters",
        multiple=True,
        type=click.Path(file_okay=False),
        help="A prefilter folder (prefilter train); items it scores below its threshold get "
        "label 0 without a request. Repeatable, one per policy.",
    ),
    click.option(
        "--audit-rate",
        type=click.FloatRange(0.0, 1.0),
        default=0.02,
        show_default=True,
        help="Share of prefiltered items sent to the model anyway, to measure the "
        "prefilter's miss rate (reported in the manifest).",
    ),
    click.option(
        "--num-workers",
        type=click.IntRange(1),
        default=1,
        show_default=True,
        help="Static sharding: this many workers share the inputs, each file going to one "
        "worker by a stable hash of its path (Kubernetes Indexed Jobs, Slurm arrays).",
    ),
    click.option(
        "--worker-index",
        type=click.IntRange(0),
        default=0,
        show_default=True,
        envvar="SAFEGUARD_WORKER_INDEX",
        help="This worker's index, 0..N-1 (or $SAFEGUARD_WORKER_INDEX; set it from "
        "$JOB_COMPLETION_INDEX or $SLURM_ARRAY_TASK_ID).",
    ),
    click.option(
        "--runner",
        type=click.Choice(["local", "ray"]),
        default="local",
        show_default=True,
        help="local: this process; ray: a Ray Data pipeline over --replicas engine actors.",
    ),
    click.option(
        "--replicas",
        type=click.IntRange(1),
        default=1,
        show_default=True,
        help="--runner ray: engine actors (one per GPU, or per --gpus-per-replica GPUs).",
    ),
    click.option(
        "--gpus-per-replica",
        type=click.FloatRange(0),
        default=None,
        help="--runner ray: GPUs per actor. Default: --tensor-parallel-size (0 on CPU).",
    ),
    click.option(
        "--ray-address",
        default=None,
        help="--runner ray: join this cluster (e.g. ray://head:10001 or auto); default: "
        "start a local Ray instance.",
    ),
    click.option(
        "--prefilter-allow-mismatch",
        is_flag=True,
        help="Use a prefilter trained for another version of its policy (recorded in the "
        "manifest).",
    ),
    click.option("-q", "--quiet", is_flag=True, help="No progress bar."),
]


def options(decorators: list):
    """Apply a list of click options, the first listed first in ``--help``."""

    def apply(command):
        for option in reversed(decorators):
            command = option(command)
        return command

    return apply


def label_options(command):
    """The options ``label`` and ``relabel`` share: model, engine, generation and run control."""
    return options(_LABEL_OPTIONS)(command)


@cli.command()
@job_input_options("Parquet file, directory or glob; repeatable.")
@label_options
def label(**opts: Any) -> None:
    """Label every input row under every policy."""
    from batch.label_command import run_label_command

    code, _ = run_label_command(opts, command=["safeguard-batch", *sys.argv[1:]])
    sys.exit(code)


@cli.command()
@job_input_options("Parquet file, directory or glob; repeatable.")
@label_options
@click.option(
    "--examples",
    type=click.IntRange(0),
    default=10,
    show_default=True,
    help="Flipped items to show per policy.",
)
def relabel(**opts: Any) -> None:
    """Label with an edited policy, keep the old labels, and show what flips.

    Runs ``label`` (the new policy version's labels go beside the old ones, told apart by
    policy_sha256), then compares each policy's new labels with its previous version in the
    same output and writes the diff to OUT/_diffs/<run_id>.md and .json. Add --sample N to
    try the edit on N random rows first.
    """
    from batch.label_command import run_relabel_command

    sys.exit(run_relabel_command(opts, command=["safeguard-batch", *sys.argv[1:]]))


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
def eval_command(
    labels: str,
    gold: str,
    gold_columns: tuple[str, ...],
    id_column: str,
    json_path: str | None,
    png_path: str | None,
    resamples: int,
    seed: int,
) -> None:
    """Score labels against gold: precision, recall, F1, accuracy and not-ok rows per policy.

    Each policy is matched with the gold column of the same name (or one differing only in
    case, so policy s meets column S), unless --gold-column says otherwise.
    """
    from batch.errors import EXIT_USAGE, JobFailure
    from batch.evaluate import evaluate, to_markdown, to_png

    mapping = {}
    for pair in gold_columns:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(
                f"{pair!r} is not POLICY_ID=COLUMN", param_hint="--gold-column"
            )
        mapping[key] = value
    try:
        report = evaluate(labels, gold, mapping, id_column, resamples, seed)
        if png_path:
            to_png(report, png_path)
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


@cli.command()
@click.argument("old", type=click.Path(exists=True, file_okay=False))
@click.argument("new", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--old-where",
    multiple=True,
    metavar="COLUMN=VALUE",
    help="Narrow OLD, e.g. policy_sha256=<prefix>, policy_version=2, model=..., run_id=...; "
    "repeatable.",
)
@click.option("--new-where", multiple=True, metavar="COLUMN=VALUE", help="Narrow NEW, likewise.")
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
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None)
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
    policy_id: str | None,
    on: str,
    examples: int,
    seed: int,
    text_column: str,
    json_path: str | None,
    markdown_path: str | None,
) -> None:
    """Compare two label sets: flip matrix, flip rate with a 95% interval, flipped samples.

    OLD and NEW are output folders (the same folder twice, narrowed by --old-where and
    --new-where, compares two policy versions, models or runs within one output).
    """
    from pathlib import Path

    from batch.diff import DiffError, diff_outputs, parse_where, to_markdown
    from batch.errors import EXIT_USAGE, JobFailure

    try:
        olds, news = parse_where(old_where), parse_where(new_where)
        if policy_id:
            olds["policy_id"] = news["policy_id"] = policy_id
        report = diff_outputs(old, new, olds, news, on, examples, seed, text_column or None)
    except DiffError as exc:
        raise JobFailure(str(exc), EXIT_USAGE) from exc
    text = to_markdown(report)
    click.echo(text)
    if json_path:
        from batch.write import write_json_atomic

        write_json_atomic(json_path, report)
    if markdown_path:
        Path(markdown_path).write_text(text)


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

    from batch.errors import EXIT_USAGE, JobFailure
    from batch.jobspec import JobSpecError, default_run_date, resolve, to_arguments

    day = run_date.date() if run_date is not None else default_run_date()
    try:
        resolved = resolve(spec, overrides, day)
        name = resolved.get("command", "label")
        target = relabel if name == "relabel" else label
        args = to_arguments(resolved, target, spec)
    except JobSpecError as exc:
        raise JobFailure(str(exc), EXIT_USAGE) from exc
    if dry_run:
        click.echo(json.dumps(resolved, indent=2, default=str))
        click.echo(shlex.join(["safeguard-batch", name, *args]))
        return
    ctx = target.make_context(f"safeguard-batch {name}", args)
    job = {"path": str(spec), "date": day.isoformat(), "set": list(overrides), "spec": resolved}
    command = ["safeguard-batch", *sys.argv[1:]]
    if name == "relabel":
        from batch.label_command import run_relabel_command

        sys.exit(run_relabel_command(ctx.params, command, job))
    from batch.label_command import run_label_command

    code, _ = run_label_command(ctx.params, command, job)
    sys.exit(code)


@cli.group()
def policy() -> None:
    """Tools for policy writers: lint, hash and test policy files."""


@policy.command("lint")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None)
@click.option(
    "--vocab-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder holding o200k_base.tiktoken, for the token count.",
)
def policy_lint(files: tuple[str, ...], json_path: str | None, vocab_dir: str | None) -> None:
    """Check policies: front matter, sections, stated output format, examples, token count.

    Errors make a policy unusable or unparseable (exit 1); warnings are departures from
    OpenAI's guide (sections, 4-6 labelled examples, 400-600 tokens).
    """
    from batch.policy_tools import lint_policy, lint_text
    from batch.vocab import use_vocab_dir

    use_vocab_dir(vocab_dir)
    reports = [lint_policy(path) for path in files]
    for report in reports:
        click.echo(lint_text(report))
    if json_path:
        from batch.write import write_json_atomic

        write_json_atomic(json_path, {"policies": [r.as_dict() for r in reports]})
    if not all(r.ok for r in reports):
        sys.exit(1)


@policy.command("hash")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option(
    "--reasoning-effort",
    type=click.Choice(["low", "medium", "high"]),
    default="low",
    show_default=True,
    help="The prompt hash depends on it.",
)
@click.option("--vocab-dir", type=click.Path(file_okay=False), default=None)
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def policy_hash(
    files: tuple[str, ...], reasoning_effort: str, vocab_dir: str | None, as_json: bool
) -> None:
    """Print the hashes a run records: policy_sha256 (the file) and prompt_sha256."""
    from batch.errors import EXIT_USAGE, JobFailure
    from batch.policy import PolicyError
    from batch.policy_tools import policy_hashes
    from batch.vocab import use_vocab_dir

    use_vocab_dir(vocab_dir)
    for path in files:
        try:
            hashes = policy_hashes(path, reasoning_effort)
        except PolicyError as exc:
            raise JobFailure(str(exc), EXIT_USAGE) from exc
        if as_json:
            click.echo(json.dumps(hashes))
            continue
        prompt = hashes["prompt_sha256"] or "unavailable (no vocabulary; see --vocab-dir)"
        click.echo(
            f"{hashes['path']}: id {hashes['id']}, version {hashes['version']}\n"
            f"  policy_sha256 {hashes['policy_sha256']}\n"
            f"  prompt_sha256 {prompt} (reasoning effort {reasoning_effort})"
        )


@policy.command("test")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None)
@options(_ENGINE_OPTIONS)
def policy_test(files: tuple[str, ...], json_path: str | None, **opts: Any) -> None:
    """Run the [[tests]] cases in each policy's front matter through the model.

    Exit 1 if any case fails (each failure is shown with the model's rationale or
    reasoning), 2 if a policy has no test cases or cannot be loaded.
    """
    from dataclasses import asdict

    from batch.engine.base import SamplingSettings
    from batch.errors import EXIT_USAGE, JobFailure
    from batch.label_command import build_engine, quiet_engine_logs
    from batch.policy import PolicyError, load_policies
    from batch.policy_tools import format_test_results, policy_test_cases, run_policy_tests

    quiet_engine_logs(opts["verbose"])
    try:
        policies = load_policies(list(files))
        for p in policies:
            if not policy_test_cases(p.meta, p.path):
                raise PolicyError(f"{p.path}: no [[tests]] cases in the front matter")
    except PolicyError as exc:
        raise JobFailure(str(exc), EXIT_USAGE) from exc
    engine, fingerprint = build_engine(opts)
    sampling = SamplingSettings(
        temperature=opts["temperature"], top_p=opts["top_p"], max_tokens=opts["max_tokens"]
    )
    results = run_policy_tests(
        policies,
        engine,
        opts["model"],
        fingerprint,
        opts["reasoning_effort"],
        sampling,
        engine.max_model_len,
    )
    click.echo(format_test_results(results))
    if json_path:
        from batch.write import write_json_atomic

        write_json_atomic(json_path, {"results": [asdict(r) for r in results]})
    if not all(r.passed for r in results):
        sys.exit(1)


@cli.group("prefilter")
def prefilter_group() -> None:
    """A cheap classifier in front of the model, trained from labels, with a recall target."""


@prefilter_group.command("train")
@click.option("--policy", "policy_path", required=True, type=click.Path(dir_okay=False))
@click.option(
    "--labels",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="An output folder: train on the model's own ok labels for this policy version.",
)
@click.option(
    "--gold",
    type=click.Path(exists=True),
    default=None,
    help="Or a gold-labelled Parquet file/folder (with --label-column), to bootstrap.",
)
@click.option("--label-column", default=None, help="The 0/1 column of --gold.")
@click.option("--text-column", default="text", show_default=True)
@click.option(
    "--recall",
    type=click.FloatRange(0.5, 1.0),
    default=0.99,
    show_default=True,
    help="Recall of violations to keep on held-out data.",
)
@click.option("--folds", type=click.IntRange(2), default=5, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--output", required=True, type=click.Path(file_okay=False))
def prefilter_train(
    policy_path: str,
    labels: str | None,
    gold: str | None,
    label_column: str | None,
    text_column: str,
    recall: float,
    folds: int,
    seed: int,
    output: str,
) -> None:
    """Train a prefilter for one policy and choose the threshold that keeps --recall."""
    from batch.errors import EXIT_USAGE, JobFailure
    from batch.policy import PolicyError, load_policy
    from batch.prefilter import save
    from batch.prefilter_train import rows_from_gold, rows_from_labels, train_prefilter

    if (labels is None) == (gold is None):
        raise click.UsageError("give exactly one of --labels OUT or --gold PARQUET")
    if gold is not None and not label_column:
        raise click.UsageError("--gold needs --label-column")
    try:
        policy = load_policy(policy_path)
        if labels is not None:
            texts, ys = rows_from_labels(labels, policy, text_column)
            source = {"labels": labels}
        else:
            texts, ys = rows_from_gold(gold, label_column, text_column)
            source = {"gold": gold, "label_column": label_column}
        model = train_prefilter(texts, ys, policy, recall, folds, seed, source=source)
    except (PolicyError, ValueError) as exc:
        raise JobFailure(str(exc), EXIT_USAGE) from exc
    save(model, output)
    card = model.card
    click.echo(
        f"{policy.id}: trained on {card['training_rows']} rows "
        f"({card['training_positives']} violating); threshold {card['threshold']:.4f} keeps "
        f"held-out recall {card['heldout_recall']:.3f} (target {recall}) and escalates "
        f"{card['escalation_fraction']:.1%} of traffic to the model; written to {output}"
    )


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="safeguard-batch")


if __name__ == "__main__":  # pragma: no cover
    main()
