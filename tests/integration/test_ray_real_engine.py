"""`label --runner ray` with one actor holding the real vLLM CPU engine."""

import json
import os
from collections import Counter

import pytest
from conftest import POLICIES, ROOT, write_parquet
from helpers import read_output, run_cli

pytestmark = pytest.mark.integration


def keys(output):
    rows = read_output(output)
    cols = [rows.column(c).to_pylist() for c in ("source_file", "source_row", "policy_id")]
    return Counter(zip(*cols, strict=True))


def test_ray_runner_with_the_real_engine_matches_a_local_run(
    tmp_path, tiny_trained_model, monkeypatch
):
    for shard in range(2):
        write_parquet(
            tmp_path / "in" / f"s{shard}.parquet",
            {
                "id": [f"{shard}-{i}" for i in range(15)],
                "text": [f"Call 0800 {i} now to claim your prize {shard}" if i % 3 == 0
                         else f"see you at {i} o'clock, shard {shard}" for i in range(15)],
            },
        )  # fmt: skip
    common = [
        "label", "--input", str(tmp_path / "in"), "--policy", str(POLICIES / "spam.md"),
        "--model", str(tiny_trained_model), "--temperature", "0", "--max-tokens", "128",
        "--max-model-len", "4096", "--chunk-size", "8",
    ]  # fmt: skip
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    run_cli(*common, "--output", str(tmp_path / "local"))
    run_cli(*common, "--output", str(tmp_path / "ray"), "--runner", "ray", "--replicas", "1")
    assert keys(tmp_path / "ray") == keys(tmp_path / "local")
    assert max(keys(tmp_path / "ray").values()) == 1
    (manifest,) = [json.loads(p.read_text()) for p in (tmp_path / "ray" / "_runs").glob("*")]
    assert manifest["runner"] == "ray" and manifest["counts"]["rows"] == 30
    assert manifest["engine"]["replicas"] == 1
    # Greedy decoding with the same seeds: the two runners agree on the labels too.
    local = read_output(tmp_path / "local").to_pylist()
    remote = {(r["source_file"], r["source_row"]): r["label"] for r in
              read_output(tmp_path / "ray").to_pylist()}  # fmt: skip
    agree = sum(remote[(r["source_file"], r["source_row"])] == r["label"] for r in local)
    assert agree >= 28


def _actor_pids(busy: bool = False) -> list[int]:
    """Processes of engine actors (Ray names them after the actor's class and method);
    ``busy``: only those inside ``LabelActor.run``, holding work from the queue (one whose
    run has returned is idle: killed, it fails no task and there is nothing to recover)."""
    prefix = b"ray::LabelActor.run\0" if busy else b"ray::LabelActor"
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    command = handle.read()
            except OSError:
                continue
            if command.startswith(prefix):
                found.append(int(entry))
    return found


ROWS = 64  # per shard


def test_two_real_actors_on_s3_input_and_output_survive_one_being_killed(
    tmp_path, tiny_trained_model, s3_server
):
    import signal
    import subprocess
    import sys
    import time

    from conftest import VLLM_TEST_ENV
    from helpers import table_version

    bucket = s3_server.bucket()
    root = f"s3://{bucket}/in"
    # Enough rows that work is left when the second actor's engine is up: on 2 cores the
    # engines load one after the other, and 72 rows were once all done by the first.
    for shard in range(3):
        s3_server.put_parquet(f"{root}/s{shard}.parquet", {
            "id": [f"{shard}-{i}" for i in range(ROWS)],
            "text": [f"win a prize {i}, reply now {shard}" if i % 4 == 0
                     else f"lunch at {i}? shard {shard}" for i in range(ROWS)],
        })  # fmt: skip
    output = f"s3://{bucket}/labels"  # the table on the store too; the index in --cache-dir
    command = [
        sys.executable, "-m", "batch.cli", "label", "--input", root, "--output", output,
        "--cache-dir", str(tmp_path / "cache"),
        "--policy", str(POLICIES / "spam.md"), "--model", str(tiny_trained_model),
        "--temperature", "0", "--max-tokens", "96", "--max-model-len", "4096",
        "--chunk-size", "4", "--batch-size", "4", "--runner", "ray", "--replicas", "2",
    ]  # fmt: skip
    paths = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, **VLLM_TEST_ENV, "PYTHONPATH": paths}
    job = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and job.poll() is None:
        if table_version(output) >= 1 and len(_actor_pids()) == 2 and _actor_pids(busy=True):
            break
        time.sleep(0.2)
    busy = _actor_pids(busy=True)
    assert job.poll() is None and busy, "the run ended before an actor could be killed"
    os.kill(busy[0], signal.SIGKILL)  # an engine actor's process with work in hand, mid-run
    _, err = job.communicate(timeout=900)
    assert job.returncode == 0, err[-3000:]
    assert "died" in err  # the driver saw it and gave its chunks to a new actor
    found = keys(output)
    expected = {(f"s{s}.parquet", r, "spam") for s in range(3) for r in range(ROWS)}
    assert set(found) == expected and max(found.values()) == 1
