"""Every benchmark under scripts/ runs in its smoke mode (tiny sizes, seconds), so a change that
breaks one fails here instead of on the day somebody measures with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, SCRIPTS, VLLM_TEST_ENV

# Each script and the test that runs its smoke mode.
SMOKED = {
    "bench_run_scale.py": "test_run_scale_smoke",
    "bench_scale.py": "test_history_scale_smoke",
    "bench_report.py": "test_report_bench_smoke",
    "bench_ray.py": "test_ray_bench_smoke",
    "bench_object_store.py": "test_object_store_bench_smoke",
    "bench.py": "test_bench_smoke_on_the_real_engine (integration); --engine openai in "
    "tests/integration/test_other_engines_real.py",
    "bench_t1.py": "test_bench_smoke_on_the_real_engine (integration), through bench.py",
}


def bench(*args, env=None, timeout=600):
    done = subprocess.run(
        [sys.executable, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_every_benchmark_script_has_a_smoke_test():
    scripts = sorted(path.name for path in SCRIPTS.glob("bench*.py"))
    assert scripts == sorted(SMOKED)


def test_run_scale_smoke(tmp_path):
    report_path = tmp_path / "scale.json"
    done = bench(SCRIPTS / "bench_run_scale.py", "--smoke", "--json", report_path)
    report = json.loads(report_path.read_text())
    for key in ("rows", "files", "seconds", "labels_per_second", "peak_rss_mib",
                "first_commit_seconds", "index_bytes_per_label", "commits"):  # fmt: skip
        assert key in report, key
    assert report["rows"] == 3000 and report["files"] == 2
    assert report["baseline"]["rows"] == 1000
    assert report["resume"]["requests"] == 0
    assert report["verify"]["complete"] and report["verify"]["present"] == 6000
    kill = report["kill"]
    assert kill["rows_after_rerun"] == kill["keys_after_rerun"] == 6000
    assert "| this run | 3,000 | 2 |" in done.stdout


def test_object_store_bench_smoke(tmp_path):
    report_path = tmp_path / "store.json"
    done = bench(SCRIPTS / "bench_object_store.py", "--smoke", "--json", report_path)
    report = json.loads(report_path.read_text())
    assert report["rows"] == 2000 and all(report["checks"].values())
    for side in ("local", "s3"):
        assert report[side]["labels"] == 4000 and report[side]["resume"]["requests"] == 0
    assert report["ratio_speed"] > 0
    assert "| s3 | 2,000 | 2 |" in done.stdout


def test_history_scale_smoke(tmp_path):
    report_path, scratch = tmp_path / "history.json", tmp_path / "not" / "there" / "yet"
    bench(SCRIPTS / "bench_scale.py", "--smoke", "--json", report_path, "--work", scratch)
    assert scratch.is_dir() and not list(scratch.iterdir())  # made, and left clean
    (result,) = json.loads(report_path.read_text())["results"]
    assert result["history_rows"] == 20_000 and result["night_rows"] == 500
    assert result["index_bytes_per_label"] > 0


def test_report_bench_smoke(tmp_path):
    report_path = tmp_path / "report.json"
    bench(SCRIPTS / "bench_report.py", "--smoke", "--dir", tmp_path / "out", "--json", report_path)
    result = json.loads(report_path.read_text())
    assert result["rows"] == 2000 and result["page_bytes"] > 0


def test_ray_bench_smoke(tmp_path, local_ray):
    import bench_ray

    report_path = tmp_path / "ray.json"
    assert bench_ray.main(["--smoke", "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["labels"] == 600
    assert report["local"]["labels"] == report["ray"]["labels"] == 600
    assert report["ratio"] > 0 and report["engine_limit_per_second"] > 0


@pytest.mark.integration
def test_bench_smoke_on_the_real_engine(tmp_path, tiny_random_model):
    report_path = tmp_path / "bench.json"
    bench(SCRIPTS / "bench.py", "--smoke", "--model", tiny_random_model, "--json", report_path,
          env=VLLM_TEST_ENV)  # fmt: skip
    report = json.loads(report_path.read_text())
    for key in ("ratio_job_to_engine", "ratio_job_to_naive", "harness_items_per_s",
                "rss_ratio_10x", "ratio_job_to_engine_t1", "first_chunk_seconds"):  # fmt: skip
        assert key in report, key
    # the greedy phases ask for the same work: the job's score log-probabilities too
    assert report["engine_limit"]["requests"] == report["job"]["requests"]
    assert report["t1"]["settings"]["batches"] == 2
