"""Glue between the ``label`` command's options and the library: validate, build, run, report."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from batch.cli import parse_engine_args
from batch.errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_ROWS_FAILED, EXIT_USAGE, JobFailure

if TYPE_CHECKING:  # pragma: no cover
    from batch.pipeline import RunResult

DIFFS_DIR = "_diffs"


def quiet_engine_logs(verbose: bool) -> None:
    """vLLM's own log lines only with -v: a batch job's stderr should say what the job did."""
    if not verbose:
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"vllm\.")
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)


def build_engine(opts: dict[str, Any], start: bool = True) -> tuple[Any, str]:
    """Check the vocabulary and the model directory (cheap), then start vLLM (slow).

    Returns the engine (or, with ``start=False``, a factory that builds it where it is
    called, for Ray actors) and the model fingerprint; raises :class:`JobFailure` (exit 2).
    """
    from batch.fingerprint import ModelError, model_fingerprint
    from batch.render import load_encoding, stop_token_ids
    from batch.vocab import VocabError, check_vocab, use_vocab_dir

    use_vocab_dir(opts.get("vocab_dir"))
    try:
        check_vocab()
        load_encoding()
    except VocabError as exc:
        raise JobFailure(str(exc), EXIT_USAGE) from exc
    try:
        fingerprint = model_fingerprint(opts["model"])
    except ModelError as exc:
        raise JobFailure(str(exc), EXIT_USAGE) from exc
    extra = parse_engine_args(opts.get("engine_args", ()))

    from batch.engine.vllm_engine import EngineConfig, VLLMEngine, VLLMEngineFactory

    engine_config = EngineConfig(
        model=opts["model"],
        tensor_parallel_size=opts.get("tensor_parallel_size", 1),
        gpu_memory_utilization=opts.get("gpu_memory_utilization", 0.9),
        max_model_len=opts.get("max_model_len"),
        max_num_seqs=opts.get("max_num_seqs"),
        seed=opts.get("seed", 0),
        extra=extra,
    )
    if not start:
        return VLLMEngineFactory(engine_config, stop_token_ids()), fingerprint
    return VLLMEngine(engine_config, stop_token_ids()), fingerprint


def load_prefilters(opts: dict[str, Any], policies: list) -> tuple[dict[str, Any], list[str]]:
    """The prefilters by policy id, refusing one trained for another policy version."""
    from batch.prefilter import PrefilterError, load

    by_id = {p.id: p for p in policies}
    prefilters: dict[str, Any] = {}
    allowed: list[str] = []
    for directory in opts.get("prefilters") or ():
        try:
            prefilter = load(directory)
        except PrefilterError as exc:
            raise JobFailure(str(exc), EXIT_USAGE) from exc
        policy = by_id.get(prefilter.policy_id)
        if policy is None:
            raise JobFailure(
                f"{directory}: prefilter for policy {prefilter.policy_id!r}, which this run "
                "does not label",
                EXIT_USAGE,
            )
        if prefilter.policy_id in prefilters:
            raise JobFailure(f"two prefilters for policy {policy.id!r}", EXIT_USAGE)
        trained_for = prefilter.card.get("policy_sha256")
        if trained_for != policy.sha256:
            if not opts.get("prefilter_allow_mismatch"):
                raise JobFailure(
                    f"{directory}: prefilter was trained for {policy.id} with policy_sha256 "
                    f"{str(trained_for)[:12]}…, but {policy.path} is now {policy.sha256[:12]}…; "
                    "retrain it (safeguard-batch prefilter train) or pass "
                    "--prefilter-allow-mismatch to use it anyway",
                    EXIT_USAGE,
                )
            allowed.append(policy.id)
        prefilters[policy.id] = prefilter
    return prefilters, allowed


def run_with_ray(config: Any, factory: Any, opts: dict[str, Any]) -> RunResult:
    """The Ray Data runner: ``--replicas`` engine actors, each with its GPUs."""
    try:
        from batch.ray_runner import run_label_job_ray
    except ImportError as exc:
        raise JobFailure(
            "--runner ray needs Ray Data: pip install 'safeguard-batch[ray]'", EXIT_USAGE
        ) from exc
    from batch.engine.vllm_engine import is_cpu_build

    gpus = opts.get("gpus_per_replica")
    if gpus is None:
        gpus = 0 if is_cpu_build() else opts["tensor_parallel_size"]
    return run_label_job_ray(
        config,
        factory,
        replicas=opts["replicas"],
        gpus_per_replica=gpus,
        address=opts.get("ray_address"),
        engine_description={"config": factory.config.__dict__},
    )


def run_label_command(
    opts: dict[str, Any], command: list[str], job_spec: dict[str, Any] | None = None
) -> tuple[int, RunResult]:
    """Validate everything cheap first (policies, inputs, vocabulary, model), then load vLLM."""
    from batch.engine.base import SamplingSettings
    from batch.job_inputs import load_policies_and_inputs
    from batch.parse import ENGINE_ERROR
    from batch.pipeline import JobConfig, run_label_job, summary_line
    from batch.read import InputError

    quiet_engine_logs(opts["verbose"])
    if opts["sample"] is not None and opts["force"]:
        raise JobFailure("--sample and --force cannot be combined", EXIT_USAGE)
    if opts["sample"] is not None and opts.get("num_workers", 1) > 1:
        raise JobFailure("--sample draws from all inputs: run it on one worker", EXIT_USAGE)
    policies, inputs, skipped = load_policies_and_inputs(opts)
    for bad in skipped:
        click.echo(f"skipping {bad['error']}", err=True)
    prefilters, allowed = load_prefilters(opts, policies)
    ray = opts.get("runner") == "ray"
    if ray and opts["sample"] is not None:
        raise JobFailure("--sample draws from all inputs: run it with --runner local", EXIT_USAGE)
    engine, fingerprint = build_engine(opts, start=not ray)
    config = JobConfig(
        inputs=inputs,
        policies=policies,
        output=opts["output"],
        model=opts["model"],
        model_fingerprint=fingerprint,
        reasoning_effort=opts["reasoning_effort"],
        sampling=SamplingSettings(
            temperature=opts["temperature"], top_p=opts["top_p"], max_tokens=opts["max_tokens"]
        ),
        id_column=opts["id_column"],
        text_column=opts["text_column"],
        chunk_size=opts["chunk_size"],
        batch_requests=opts["batch_size"],
        max_model_len=opts["max_model_len"] if ray else engine.max_model_len,
        force=opts["force"],
        retry_failed_only=opts["retry_failed"],
        max_attempts=opts["max_attempts"],
        skip_bad_files=opts["on_bad_file"] == "skip",
        skipped_files=skipped,
        multi_policy=opts["multi_policy"],
        reuse=opts["reuse"],
        sample=opts["sample"],
        sample_seed=opts["sample_seed"],
        job_spec=job_spec,
        prefilters=prefilters,
        audit_rate=opts["audit_rate"],
        prefilter_mismatch_allowed=allowed,
        worker={"index": opts.get("worker_index", 0), "count": opts.get("num_workers", 1)},
        command=command,
    )
    progress = not opts["quiet"] and sys.stderr.isatty()
    try:
        if ray:
            result = run_with_ray(config, engine, opts)
        else:
            result = run_label_job(config, engine, progress=progress)
    except InputError as exc:
        raise JobFailure(
            f"{exc}; finished chunks are kept, rerun the same command to resume",
            EXIT_BAD_INPUT,
        ) from exc
    click.echo(summary_line(result), err=True)
    failed = result.manifest["counts"]["status"].get(ENGINE_ERROR, 0)
    if failed:
        click.echo(
            f"{failed} rows failed in the engine (status engine_error); rerun the same command "
            f"to retry them (at most {opts['max_attempts']} attempts per row)",
            err=True,
        )
        return EXIT_ROWS_FAILED, result
    return EXIT_OK, result


def run_relabel_command(
    opts: dict[str, Any], command: list[str], job_spec: dict[str, Any] | None = None
) -> int:
    """Label with the (edited) policies, then diff each against its previous version."""
    from batch.diff import diff_outputs, previous_policy_version, to_markdown
    from batch.write import write_json_atomic

    code, result = run_label_command(opts, command, job_spec)
    output = opts["output"]
    run_id = result.run_id
    reports = []
    for policy in result.manifest["policies"]:
        previous = previous_policy_version(output, policy["id"], policy["policy_sha256"])
        if previous is None:
            click.echo(f"{policy['id']}: no earlier version in {output} to compare with", err=True)
            continue
        reports.append(
            diff_outputs(
                output,
                output,
                {"policy_id": policy["id"], "policy_sha256": previous},
                {"policy_id": policy["id"], "policy_sha256": policy["policy_sha256"]},
                examples=opts["examples"],
                text_column=opts["text_column"],
            )
        )
    if not reports:
        return code
    merged = {**reports[0], "policies": [p for r in reports for p in r["policies"]]}
    merged.pop("old"), merged.pop("new")
    merged["output"] = output
    merged["run_id"] = run_id
    text = to_markdown(merged)
    diff_dir = Path(output) / DIFFS_DIR
    write_json_atomic(diff_dir / f"{run_id}.json", merged)
    (diff_dir / f"{run_id}.md").write_text(text)
    click.echo(text)
    click.echo(f"diff written to {diff_dir / run_id}.md and .json", err=True)
    return code
