"""Option declarations, each written once and shared by the commands that take it.

Their names are the fields of ``batch.job.options`` (``--batch-size`` fills ``batch_size``) and
their defaults are the only defaults: job specs are parsed by the same declarations.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import click

INT32_MAX = 2**31 - 1  # token counts are int32 columns


class Finite(click.FloatRange):
    """A float range that also refuses NaN and infinity (which no bound would catch)."""

    name = "finite float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class TableLocation(click.ParamType):
    """A label table: a local folder (``exists``: that must exist) or an ``s3://`` prefix."""

    name = "folder or s3://bucket/prefix"

    def __init__(self, exists: bool = False) -> None:
        self.exists = exists

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        from batch.output.objects import is_uri

        if is_uri(str(value)):
            return str(value)
        return click.Path(exists=self.exists, file_okay=False).convert(value, param, ctx)


CACHE_DIR_OPTION = click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    default=None,
    envvar="SAFEGUARD_BATCH_CACHE_DIR",
    help="For a table on S3: the local folder for its index (a cache: losing it costs work, "
    "never labels). Default: $SAFEGUARD_BATCH_CACHE_DIR, else ~/.cache/safeguard-batch.",
)


def options(decorators: list[Callable[[Any], Any]]) -> Callable[[Any], Any]:
    """Apply a list of click options, the first listed first in ``--help``."""

    def apply(command: Any) -> Any:
        for option in reversed(decorators):
            command = option(command)
        return command

    return apply


def input_options(input_help: str) -> list[Callable[[Any], Any]]:
    """The options ``label`` and ``verify`` share: which inputs, policies and output."""
    return [
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
            type=TableLocation(),
            help="Output folder, or s3://bucket/prefix: a Delta Lake table (one current label "
            "per row and policy).",
        ),
        CACHE_DIR_OPTION,
        click.option(
            "--source-root",
            type=click.Path(file_okay=False),
            default=None,
            help="Folder (or object-store prefix) that input paths are taken relative to, as a "
            "row's source identity. Default: each --input's own folder (a glob's folder "
            "before its first wildcard).",
        ),
        click.option("--id-column", default="id", show_default=True),
        click.option("--text-column", default="text", show_default=True),
        click.option(
            "--on-bad-file",
            type=click.Choice(["fail", "skip"]),
            default="fail",
            show_default=True,
            help="fail: stop before any work if an input is unreadable; skip: record it and go on.",
        ),
        click.option(
            "--rehash",
            is_flag=True,
            help="Hash every input's bytes instead of trusting an unchanged size and "
            "modification time (an in-place edit that kept both is found this way).",
        ),
    ]


GOLD_COLUMN_OPTION = click.option(
    "--gold-column",
    "gold_columns",
    multiple=True,
    metavar="POLICY_ID=COLUMN",
    help="Gold column for a policy (default: the column named like the policy id).",
)
ID_COLUMN_OPTION = click.option("--id-column", default="id", show_default=True)
JSON_OPTION = click.option(
    "--json", "json_path", type=click.Path(dir_okay=False), default=None, help="Also write JSON."
)
# How a run goes about its work: batching, resume and retry, reuse, sampling.
RUN_OPTIONS = [
    click.option(
        "--chunk-size",
        type=click.IntRange(1),
        default=1000,
        show_default=True,
        help="Rows read from a shard at a time (the unit of planning and of Ray's work); "
        "it never changes the output.",
    ),
    click.option(
        "--batch-size",
        type=click.IntRange(1),
        default=4096,
        show_default=True,
        help="Requests planned and committed together: each batch's labels are one commit "
        "to the output table, made as soon as its last request is answered.",
    ),
    click.option(
        "--max-in-flight",
        type=click.IntRange(1),
        default=None,
        help="Requests the engine holds at once; batches overlap in the engine, so it never "
        "drains between them. Default: 4 x the engine's sequence slots (--max-num-seqs), "
        "else --batch-size.",
    ),
    click.option(
        "--scores/--no-scores",
        default=True,
        show_default=True,
        help="Fill the score column (P(violation) at the verdict token) from the top-20 "
        "log-probabilities of each generated token; no extra generation.",
    ),
    click.option(
        "--max-num-seqs",
        type=click.IntRange(1),
        default=None,
        help="Sequences vLLM runs at once. Default: vLLM's.",
    ),
    click.option("--seed", type=int, default=0, show_default=True, help="Engine seed."),
    click.option(
        "--force", is_flag=True, help="Label every row again, even where it has a current label."
    ),
    click.option(
        "--retry-failed",
        is_flag=True,
        help="Only retry rows an earlier run left as parse_error, truncated or engine_error.",
    ),
    click.option(
        "--max-attempts",
        type=click.IntRange(1, 32767),
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
        "--compact",
        is_flag=True,
        help="Compact the output table when the run ends (see safeguard-batch compact).",
    ),
    click.option("-q", "--quiet", is_flag=True, help="No progress bar."),
]

# A cheap classifier in front of the model.
PREFILTER_OPTIONS = [
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
        type=Finite(0.0, 1.0),
        default=0.02,
        show_default=True,
        help="Share of prefiltered items sent to the model anyway, to measure the "
        "prefilter's miss rate (reported in the manifest).",
    ),
    click.option(
        "--prefilter-allow-mismatch",
        is_flag=True,
        help="Use a prefilter trained for another version of its policy (recorded in the "
        "manifest).",
    ),
]

# Scale-out: static sharding across workers, or streaming engine actors on Ray.
SCALE_OUT_OPTIONS = [
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
        help="local: this process; ray: --replicas streaming engine actors on Ray.",
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
        type=Finite(0),
        default=None,
        help="--runner ray: GPUs per actor. Default: --tensor-parallel-size (0 on CPU).",
    ),
    click.option(
        "--ray-address",
        default=None,
        help="--runner ray: join this cluster (e.g. ray://head:10001 or auto); default: "
        "start a local Ray instance.",
    ),
]
