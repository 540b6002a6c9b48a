"""SIGKILL a run at many points, resume it, and demand exactly one row per (file, row, policy)."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pyarrow.dataset as ds
import pytest
from conftest import ROOT, write_parquet

HERE = ROOT / "tests"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kill-inputs")
    for shard in range(3):
        write_parquet(
            folder / f"shard-{shard}.parquet",
            {
                "id": [f"{shard}-{i}" for i in range(14)],
                "text": [f"message {i} of shard {shard}" for i in range(14)],
            },
        )
    return folder


def start(inputs, output):
    process = subprocess.Popen(
        [sys.executable, str(HERE / "scripted_job.py"), str(inputs), str(output)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "started"
    return process


def assert_exactly_once(output, files=3, rows=14, policies=2):
    table = ds.dataset(str(output), format="parquet", partitioning="hive").to_table()
    keys = Counter(
        zip(
            table["source_file"].to_pylist(),
            table["source_row"].to_pylist(),
            table["policy_id"].to_pylist(),
            strict=True,
        )
    )
    assert len(keys) == files * rows * policies, "rows missing"
    assert max(keys.values()) == 1, "rows duplicated"
    visible = [p for p in output.rglob("*") if p.is_file() and "_tmp" not in p.parts]
    assert not [p for p in visible if p.suffix == ".tmp"], "temporaries visible to readers"


def finished_files(output):
    return len(list(output.glob("policy_id=*/*.parquet")))


def run_to_completion(inputs, output):
    done = subprocess.run(
        [sys.executable, str(HERE / "scripted_job.py"), str(inputs), str(output)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def kill_when(process, output, files_done):
    """SIGKILL the run as soon as ``files_done`` chunk files exist (0: right after it starts)."""
    while finished_files(output) < files_done and process.poll() is None:
        time.sleep(0.002)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    return finished_files(output)


def test_sigkill_at_many_points_then_resume_gives_every_row_exactly_once(tmp_path, inputs):
    total_files = 3 * 5 * 2  # shards x chunks of 3 rows (14 rows -> 5 chunks) x policies
    seen_after_kill = []
    for point, files_done in enumerate([0, 1, 2, 5, 9, 14, 19, 24, 28]):
        output = tmp_path / f"out-{point}"
        process = start(inputs, output)
        seen_after_kill.append(kill_when(process, output, files_done))
        run_to_completion(inputs, output)
        assert_exactly_once(output)
    # The kills really landed mid-run, at several different stages.
    partial = {n for n in seen_after_kill if 0 < n < total_files}
    assert len(partial) >= 5, seen_after_kill


def test_killed_twice_in_a_row_still_converges(tmp_path, inputs):
    output = tmp_path / "out"
    for files_done in (4, 12):
        kill_when(start(inputs, output), output, files_done)
    run_to_completion(inputs, output)
    assert_exactly_once(output)
