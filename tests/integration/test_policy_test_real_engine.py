"""`policy test` runs a policy's own test cases through the real engine."""

import json
import os
import subprocess
import sys

import pytest
from conftest import POLICIES, ROOT, VLLM_TEST_ENV

pytestmark = pytest.mark.integration


def test_policy_test_command_with_the_trained_tiny_model(tmp_path, tiny_trained_model):
    report = tmp_path / "results.json"
    done = subprocess.run(
        [
            sys.executable, "-m", "batch.cli", "policy", "test", str(POLICIES / "spam.md"),
            "--model", str(tiny_trained_model), "--temperature", "0", "--max-tokens", "256",
            "--max-model-len", "4096", "--json", str(report),
        ],
        env={**os.environ, **VLLM_TEST_ENV},
        capture_output=True,
        text=True,
        cwd=ROOT,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr[-2000:]
    results = json.loads(report.read_text())["results"]
    assert [r["number"] for r in results] == [1, 2, 3, 4]
    passed = sum(r["passed"] for r in results)
    assert done.returncode == (0 if passed == 4 else 1)
    assert done.stdout.strip().endswith(f"{passed}/4 test cases passed")
    for r in results:
        assert r["passed"] == (r["status"] == "ok" and r["label"] == str(r["expected"]))
        if not r["passed"]:
            assert f"FAIL spam #{r['number']}" in done.stdout
    # The demo model learned spam well enough to pass most of the policy's own cases.
    assert passed >= 3, done.stdout
