"""SIGKILL a run at many points, resume it, and demand exactly one row per (file, row, policy)."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from conftest import ROOT, write_shards
from helpers import read_output

HERE = ROOT / "tests"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("kill-inputs"), [14, 14, 14])


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
    table = read_output(output)  # the table's current version, as any Delta reader sees it
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


def commits(output):
    """Commits of labels so far: the table's log entries, less the one that created it."""
    return max(0, len(list((output / "_delta_log").glob("*.json"))) - 1)


def run_to_completion(inputs, output):
    done = subprocess.run(
        [sys.executable, str(HERE / "scripted_job.py"), str(inputs), str(output)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def kill_when(process, output, done):
    """SIGKILL the run as soon as ``done`` commits exist (0: right after it starts)."""
    while commits(output) < done and process.poll() is None:
        time.sleep(0.002)
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait()
    return commits(output)


def test_sigkill_at_many_points_then_resume_gives_every_row_exactly_once(tmp_path, inputs):
    total = 15  # commits of a whole run: about one per engine step (scripted_job.py)
    seen_after_kill = []
    for point, done in enumerate([0, 1, 2, 4, 6, 8, 10, 12, 13]):
        output = tmp_path / f"out-{point}"
        process = start(inputs, output)
        seen_after_kill.append(kill_when(process, output, done))
        run_to_completion(inputs, output)
        assert_exactly_once(output)
    # The kills really landed mid-run, at several different stages.
    partial = {n for n in seen_after_kill if 0 < n < total}
    assert len(partial) >= 5, seen_after_kill


def test_killed_twice_in_a_row_still_converges(tmp_path, inputs):
    output = tmp_path / "out"
    for done in (2, 6):
        kill_when(start(inputs, output), output, done)
    run_to_completion(inputs, output)
    assert_exactly_once(output)


def test_a_kill_between_a_commit_and_the_index_still_drops_rows_a_shrink_took(tmp_path):
    """The index hears of the (file, policy) pairs a commit writes before the commit, so a run
    killed right after it still leaves an index that knows the file was labelled: when the
    file shrinks, its rows past the new end go."""
    from conftest import write_parquet
    from helpers import scripted_process

    rows = {"id": [f"i{i}" for i in range(9)], "text": [f"m {i}" for i in range(9)]}
    shard = write_parquet(tmp_path / "in" / "s.parquet", rows)
    output = tmp_path / "out"
    killed = scripted_process(shard.parent, output, "--die-inside-commit", "2")
    assert killed.returncode == 137, killed.stderr[-2000:]
    assert max(read_output(output)["source_row"].to_pylist()) >= 1  # past the end-to-be
    write_parquet(shard, {"id": ["i0"], "text": ["m 0"]})
    assert scripted_process(shard.parent, output).returncode == 0
    assert_exactly_once(output, files=1, rows=1)
