"""``label``: validate everything cheap first (policies, inputs, prefilters, vocabulary, model
directory, option combinations), then load vLLM, run, and say what happened."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from typing import Any

from batch.errors import EXIT_OK, EXIT_ROWS_FAILED, InputError, UsageError
from batch.flow.config import JobConfig
from batch.job.config import job_config
from batch.job.engine import engine_factory, prepare_engine, quiet_engine_logs, start_engine
from batch.job.inputs import load_policies_and_inputs
from batch.job.options import LabelOptions
from batch.output.place import check_writable
from batch.output.schema import ENGINE_ERROR
from batch.prefilter.model import load_for_policies
from batch.runners.local import run_label_job
from batch.runners.run import RunResult, summary_line

Say = Callable[[str], None]


def to_stderr(message: str) -> None:
    print(message, file=sys.stderr)


def _run_with_ray(config: JobConfig, engine_config: Any, options: LabelOptions) -> RunResult:
    """The Ray runner: ``--replicas`` streaming engine actors, each with its GPUs."""
    try:
        from batch.runners.ray import run_label_job_ray
    except ImportError as exc:
        raise UsageError("--runner ray needs Ray: pip install 'safeguard-batch[ray]'") from exc
    from batch.engine.vllm_engine import is_cpu_build

    gpus = options.gpus_per_replica
    if gpus is None:
        gpus = 0 if is_cpu_build() else options.tensor_parallel_size
    return run_label_job_ray(
        config,
        engine_factory(engine_config),
        replicas=options.replicas,
        gpus_per_replica=gpus,
        address=options.ray_address,
        engine_description={"config": engine_config.__dict__},
    )


def _run(config: JobConfig, engine_config: Any, options: LabelOptions) -> RunResult:
    if config.runner == "ray":
        return _run_with_ray(config, engine_config, options)
    engine = start_engine(engine_config)
    config = dataclasses.replace(config, max_model_len=engine.max_model_len)
    progress = not options.quiet and sys.stderr.isatty()
    return run_label_job(config, engine, progress=progress)


def run_label(
    options: LabelOptions,
    command: list[str],
    job_spec: dict[str, Any] | None = None,
    say: Say = to_stderr,
) -> tuple[int, RunResult]:
    """Run ``label``; the exit code (0, or 4 when rows ended in ``engine_error``) and result."""
    quiet_engine_logs(options.verbose)
    policies, inputs, skipped = load_policies_and_inputs(
        options, options.num_workers, options.worker_index
    )
    for bad in skipped:
        say(f"skipping {bad['error']}")
    prefilters = load_for_policies(options.prefilters, policies, options.prefilter_allow_mismatch)
    engine_config, fingerprint = prepare_engine(options, options.max_num_seqs, options.seed)
    config = job_config(
        options, inputs, policies, fingerprint, prefilters, skipped, command, job_spec
    )
    check_writable(options.output)  # before the model loads, not after
    try:
        result = _run(config, engine_config, options)
    except InputError as exc:
        raise InputError(
            f"{exc}; finished chunks are kept, rerun the same command to resume"
        ) from exc
    say(summary_line(result))
    if options.compact:
        from batch.job.maintenance import compact

        report = compact(options.output)
        say(
            f"compacted {options.output}: {report['files_before']} -> {report['files_after']} files"
        )
    failed = result.manifest["counts"]["status"].get(ENGINE_ERROR, 0)
    if failed:
        say(
            f"{failed} rows failed in the engine (status engine_error); rerun the same command "
            f"to retry them (at most {options.max_attempts} attempts per row)"
        )
        return EXIT_ROWS_FAILED, result
    return EXIT_OK, result
