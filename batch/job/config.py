"""From ``label``'s options to a validated :class:`~batch.flow.config.JobConfig`."""

from __future__ import annotations

from typing import Any

from batch.flow.config import JobConfig
from batch.flow.read import InputFile
from batch.job.engine import model_name
from batch.job.options import LabelOptions
from batch.policy.files import Policy
from batch.prefilter.model import Prefilter


def job_config(
    options: LabelOptions,
    inputs: list[InputFile],
    policies: list[Policy],
    model_fingerprint: str,
    prefilters: tuple[dict[str, Prefilter], list[str]] = ({}, []),
    skipped_files: list[dict[str, str]] | None = None,
    command: list[str] | None = None,
    job_spec: dict[str, Any] | None = None,
) -> JobConfig:
    """The run's configuration; raises ``UsageError`` for a combination no run can honour.

    ``max_model_len`` is the option's value; the local runner replaces it with the loaded
    engine's own once vLLM is up.
    """
    by_policy, mismatch_allowed = prefilters
    return JobConfig(
        inputs=inputs,
        policies=policies,
        output=options.output,
        model=model_name(options),
        model_fingerprint=model_fingerprint,
        reasoning_effort=options.reasoning_effort,
        sampling=options.sampling,
        id_column=options.id_column,
        text_column=options.text_column,
        chunk_size=options.chunk_size,
        batch_size=options.batch_size,
        max_in_flight=options.max_in_flight,
        scores=options.scores,
        max_model_len=options.max_model_len,
        force=options.force,
        retry_failed=options.retry_failed,
        max_attempts=options.max_attempts,
        on_bad_file=options.on_bad_file,
        skipped_files=skipped_files or [],
        multi_policy=options.multi_policy,
        reuse=options.reuse,
        sample=options.sample,
        sample_seed=options.sample_seed,
        job_spec=job_spec,
        prefilters=by_policy,
        audit_rate=options.audit_rate,
        prefilter_mismatch_allowed=mismatch_allowed,
        worker={"index": options.worker_index, "count": options.num_workers},
        runner=options.runner,
        command=command if command is not None else ["safeguard-batch", "label"],
    )
