"""Builders shared by the unit tests."""

from __future__ import annotations

from pathlib import Path

from batch.engine.base import SamplingSettings
from batch.flow.config import JobConfig
from batch.flow.read import inspect_inputs
from batch.flow.sources import resolve_sources
from batch.runners.local import run_label_job


def make_config(inputs, policies, output: Path, **overrides) -> JobConfig:
    skip = overrides.get("on_bad_file", "fail") == "skip"
    sources = resolve_sources([str(p) for p in inputs], overrides.pop("source_root", None))
    files, _ = inspect_inputs(sources, "id", "text", skip)
    settings = dict(
        inputs=files,
        policies=list(policies),
        output=str(output),
        model="tiny",
        model_fingerprint="f" * 64,
        sampling=SamplingSettings(temperature=1.0, top_p=1.0, max_tokens=64),
        chunk_size=2,
        batch_size=4,
        max_model_len=4096,
        command=["test"],
    )
    settings.update(overrides)
    return JobConfig(**settings)


def run(inputs, policies, output, engine, **overrides):
    return run_label_job(make_config(inputs, policies, output, **overrides), engine)


def well_formed(request):
    """A valid 'no violation' answer in each shipped policy's format (binary or JSON)."""
    from batch.vocab import load_encoding

    text = load_encoding().decode(list(request.prompt_token_ids[:400]))
    if "# Harassment and Hate Policy" in text:
        return '{"violation": 0, "policy_category": null, "rationale": "Fine."}'
    return "0"


def answering(respond=well_formed):
    from batch.engine.scripted import ScriptedEngine

    return ScriptedEngine(respond)


def run_cli(*args):
    """Run ``safeguard-batch ARGS`` in a fresh process with the fast vLLM CPU settings."""
    import os
    import subprocess
    import sys

    from conftest import ROOT, VLLM_TEST_ENV

    env = {**os.environ, **VLLM_TEST_ENV}
    done = subprocess.run(
        [sys.executable, "-m", "batch.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def scripted_factory():
    """An engine factory Ray actors can unpickle: a scripted engine with valid answers."""
    return answering()


def read_output(output):
    """The output table's current rows, as Arrow (through Delta, never by globbing files)."""
    from batch.output.table import LabelTable

    return LabelTable(output).scan().collect().to_arrow()


def rows_of(output):
    return read_output(output).to_pylist()


def table_version(output):
    """The output table's version, or -1 before its first commit."""
    from batch.output.table import LabelTable

    table = LabelTable(output)
    return table.version() if table.exists() else -1


def scripted_process(inputs, output, *extra, env=None):
    """tests/scripted_job.py in its own process (two policies, chunks of 3 rows, no delay);
    ``env``: its whole environment (default: this one's)."""
    import os
    import subprocess
    import sys

    from conftest import ROOT

    env = env or {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    return subprocess.run(
        [sys.executable, str(ROOT / "tests" / "scripted_job.py"), str(inputs), str(output),
         "--delay", "0", *extra],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
