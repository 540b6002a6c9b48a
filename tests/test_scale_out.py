"""Scale-out: static sharding and the Ray Data runner give exactly a local run's rows."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from click.testing import CliRunner
from conftest import ROOT, write_shards
from helpers import make_config, read_output, run, scripted_factory, table_version

from batch.cli import cli
from batch.flow.read import inspect_inputs
from batch.flow.sources import resolve_inputs, resolve_sources
from batch.reports.verify import verify
from batch.runners.sharding import files_for_worker, worker_of


@pytest.fixture
def shards(tmp_path):
    return write_shards(tmp_path / "in", [3 + shard for shard in range(7)])


def work_keys(output):
    rows = read_output(output)
    return Counter(
        zip(
            rows.column("source_file").to_pylist(),
            rows.column("source_row").to_pylist(),
            rows.column("policy_id").to_pylist(),
            strict=True,
        )
    )


def test_static_sharding_covers_every_file_once_and_matches_a_single_run(
    tmp_path, shards, policies
):
    from helpers import answering

    run([shards], policies, tmp_path / "single", answering())
    expected = work_keys(tmp_path / "single")
    paths = resolve_inputs([str(shards)])
    assigned = [files_for_worker(paths, 3, i) for i in range(3)]
    assert sorted(p for part in assigned for p in part) == sorted(paths)
    assert sum(1 for part in assigned if part) >= 2  # the hash spreads the files
    for index, part in enumerate(assigned):
        if part:
            config = make_config(
                part,
                policies,
                tmp_path / "union",
                worker={"index": index, "count": 3},
                source_root=str(shards),
            )
            from batch.runners.local import run_label_job

            run_label_job(config, answering())
    union = work_keys(tmp_path / "union")
    assert union == expected and max(union.values()) == 1
    manifests = list((tmp_path / "union" / "_runs").glob("*.json"))
    assert len(manifests) == sum(1 for part in assigned if part)  # one per worker
    files, _ = inspect_inputs(resolve_sources([str(shards)]), "id", "text", False)
    assert verify(tmp_path / "union", files, policies)["complete"]


def test_a_new_file_moves_no_other_file_to_another_worker(shards):
    paths = resolve_inputs([str(shards)])
    before = {p: worker_of(p, 3) for p in paths}
    after = {p: worker_of(p, 3) for p in [*paths, str(shards / "zz-new.parquet")]}
    assert all(after[p] == w for p, w in before.items())


def test_worker_index_out_of_range_is_a_usage_error(tmp_path, shards):
    result = CliRunner().invoke(
        cli,
        [
            "label", "--input", str(shards), "--policy", str(ROOT / "policies" / "spam.md"),
            "--output", str(tmp_path / "o"), "--model", str(tmp_path),
            "--num-workers", "3", "--worker-index", "3",
        ],
    )  # fmt: skip
    assert result.exit_code == 2 and "--worker-index must be in 0..2" in result.output


def test_ray_runner_with_two_actors_matches_a_single_process_run(
    tmp_path, shards, policies, local_ray
):
    from helpers import answering

    from batch.runners.ray import run_label_job_ray

    run([shards], policies, tmp_path / "single", answering())
    config = make_config([shards], policies, tmp_path / "ray")
    result = run_label_job_ray(config, scripted_factory, replicas=2, cpus_per_replica=0.5)
    assert work_keys(tmp_path / "ray") == work_keys(tmp_path / "single")
    assert max(work_keys(tmp_path / "ray").values()) == 1
    rows = sum(3 + s for s in range(7))
    assert result.manifest["counts"]["rows"] == rows
    assert result.manifest["per_policy"]["spam"]["requests_sent"] == rows
    assert result.manifest["runner"] == "ray"
    # Same chunk names as a local run: rerunning locally finds everything done.
    from helpers import answering as again

    engine = again()
    rerun = run([shards], policies, tmp_path / "ray", engine)
    assert engine.requests_seen == 0 and rerun.manifest["counts"]["kept"] == rows * 2


def test_a_killed_ray_run_resumes_with_every_row_exactly_once(tmp_path, shards):
    output = tmp_path / "out"
    script = ROOT / "tests" / "scripted_job.py"
    process = subprocess.Popen(
        [sys.executable, str(script), str(shards), str(output), "--runner", "ray",
         "--delay", "1.0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    assert process.stdout.readline().strip() == "started"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and table_version(output) < 3:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # the driver and its Ray workers
    process.wait()
    done_before = table_version(output)
    assert 3 <= done_before < 16  # killed part-way (a commit per chunk, 16 chunks in all)
    resumed = subprocess.run(
        [sys.executable, str(script), str(shards), str(output), "--runner", "ray",
         "--delay", "0"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    keys = work_keys(output)
    expected = {
        (f"shard-{s}.parquet", r, p)
        for s in range(7)
        for r in range(3 + s)
        for p in ("spam", "harassment")
    }
    assert set(keys) == expected and max(keys.values()) == 1
