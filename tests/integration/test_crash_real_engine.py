"""The real engine: SIGKILL mid-run and resume; a broken input folder with --on-bad-file skip."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from conftest import POLICIES, ROOT, SCRIPTS, VLLM_TEST_ENV
from helpers import read_output, table_version

pytestmark = pytest.mark.integration

POLICY_ARGS = ["--policy", str(POLICIES / "spam.md"), "--policy", str(POLICIES / "harassment.md")]


def label_command(inputs, output, model, *extra):
    return [
        sys.executable, "-m", "batch.cli", "label", "--input", str(inputs), *POLICY_ARGS,
        "--model", str(model), "--output", str(output), "--max-model-len", "4096",
        "--max-tokens", "128", "--chunk-size", "16", "--batch-size", "32", *extra,
    ]  # fmt: skip


def cli(*args):
    env = {**os.environ, **VLLM_TEST_ENV}
    return subprocess.run(
        [sys.executable, "-m", "batch.cli", *args], env=env, capture_output=True, text=True,
        cwd=ROOT,
    )  # fmt: skip


def test_sigkill_mid_run_then_resume(tmp_path, tiny_trained_model):
    shards = tmp_path / "sms"
    subprocess.run(
        [sys.executable, str(SCRIPTS / "sms_to_parquet.py"), str(shards), "--shards", "3",
         "--limit", "240"],
        check=True,
    )  # fmt: skip
    out = tmp_path / "labels"
    env = {**os.environ, **VLLM_TEST_ENV}
    # one attempt: a failure committed before the kill is final, so the resume keeps every
    # row the killed run committed (the tiny model's many parse errors would be retried)
    once = ("--max-attempts", "1")
    process = subprocess.Popen(
        label_command(shards, out, tiny_trained_model, *once), env=env, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while table_version(out) < 2:  # two commits of labels (version 0 is the empty table)
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    written = table_version(out)
    assert 2 <= written < 15  # 240 rows / 16 = 15 chunks, a commit each
    committed = read_output(out).num_rows
    resumed = cli(*label_command(shards, out, tiny_trained_model, *once)[3:])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"{committed} already in the output" in resumed.stderr, resumed.stderr[-600:]
    table = read_output(out)
    keys = Counter(
        zip(table["source_file"].to_pylist(), table["source_row"].to_pylist(),
            table["policy_id"].to_pylist(), strict=True)
    )  # fmt: skip
    assert len(keys) == 480 and max(keys.values()) == 1
    verified = cli("verify", "--input", str(shards), *POLICY_ARGS, "--output", str(out))
    assert verified.returncode == 0, verified.stdout
    assert "240/240 rows labelled and current, 0 missing, 0 stale, " in verified.stdout
    assert "0 of rows that no longer exist, 0 duplicated" in verified.stdout


def test_broken_inputs_run_to_completion_and_verify(tmp_path, tiny_trained_model):
    bad = tmp_path / "bad"
    subprocess.run([sys.executable, str(SCRIPTS / "make_bad_inputs.py"), str(bad)], check=True)
    out = tmp_path / "labels"
    refused = cli(*label_command(bad, out, tiny_trained_model)[3:])
    assert refused.returncode == 3
    assert "missing_text_column.parquet" in refused.stderr and not out.exists()
    done = cli(*label_command(bad, out, tiny_trained_model, "--on-bad-file", "skip")[3:])
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("text_not_string", "missing_text_column", "not_parquet", "truncated"):
        assert f"{name}.parquet" in done.stderr
    verified = cli(
        "verify", "--input", str(bad), *POLICY_ARGS, "--output", str(out), "--on-bad-file", "skip"
    )
    assert verified.returncode == 0, verified.stdout
    clean = " 0 missing, 0 stale, 0 of rows that no longer exist, 0 duplicated"
    assert verified.stdout.count(clean) == 2
