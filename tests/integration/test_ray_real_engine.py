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
