"""Builders shared by the unit tests."""

from __future__ import annotations

from pathlib import Path

from batch.engine.base import SamplingSettings
from batch.pipeline import JobConfig, run_label_job
from batch.read import inspect_inputs, resolve_inputs


def make_config(inputs, policies, output: Path, **overrides) -> JobConfig:
    skip = overrides.get("skip_bad_files", False)
    files, _ = inspect_inputs(resolve_inputs([str(p) for p in inputs]), "id", "text", skip)
    settings = dict(
        inputs=files,
        policies=list(policies),
        output=str(output),
        model="tiny",
        model_fingerprint="f" * 64,
        sampling=SamplingSettings(temperature=1.0, top_p=1.0, max_tokens=64),
        chunk_size=2,
        batch_requests=4,
        max_model_len=4096,
        command=["test"],
    )
    settings.update(overrides)
    return JobConfig(**settings)


def run(inputs, policies, output, engine, **overrides):
    return run_label_job(make_config(inputs, policies, output, **overrides), engine)
