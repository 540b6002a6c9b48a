"""Glue between the ``label`` command's options and the library: validate, build, run, report."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Any

import click

from batch.cli import parse_engine_args
from batch.errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_ROWS_FAILED, EXIT_USAGE, JobFailure


def run_label_command(opts: dict[str, Any], command: list[str]) -> int:
    """Validate everything cheap first (policies, inputs, vocabulary, model), then load vLLM."""
    from batch.engine.base import SamplingSettings
    from batch.fingerprint import ModelError, model_fingerprint
    from batch.job_inputs import load_policies_and_inputs
    from batch.parse import ENGINE_ERROR
    from batch.pipeline import JobConfig, run_label_job, summary_line
    from batch.read import InputError
    from batch.render import load_encoding, stop_token_ids
    from batch.vocab import VocabError, check_vocab, use_vocab_dir

    if not opts["verbose"]:
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"vllm\.")
    logging.basicConfig(level=logging.INFO if opts["verbose"] else logging.WARNING)
    policies, inputs, skipped = load_policies_and_inputs(opts)
    for bad in skipped:
        click.echo(f"skipping {bad['error']}", err=True)
    use_vocab_dir(opts["vocab_dir"])
    try:
        check_vocab()
        load_encoding()
    except VocabError as exc:
        raise JobFailure(str(exc), EXIT_USAGE) from exc
    try:
        fingerprint = model_fingerprint(opts["model"])
    except ModelError as exc:
        raise JobFailure(str(exc), EXIT_USAGE) from exc
    extra = parse_engine_args(opts["engine_args"])

    from batch.engine.vllm_engine import EngineConfig, VLLMEngine

    engine = VLLMEngine(
        EngineConfig(
            model=opts["model"],
            tensor_parallel_size=opts["tensor_parallel_size"],
            gpu_memory_utilization=opts["gpu_memory_utilization"],
            max_model_len=opts["max_model_len"],
            max_num_seqs=opts["max_num_seqs"],
            seed=opts["seed"],
            extra=extra,
        ),
        stop_token_ids(),
    )
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
        max_model_len=engine.max_model_len,
        force=opts["force"],
        retry_failed_only=opts["retry_failed"],
        max_attempts=opts["max_attempts"],
        skip_bad_files=opts["on_bad_file"] == "skip",
        skipped_files=skipped,
        command=command,
    )
    progress = not opts["quiet"] and sys.stderr.isatty()
    try:
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
        return EXIT_ROWS_FAILED
    return EXIT_OK
