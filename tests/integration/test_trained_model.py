"""The trained demo model through the real engine: the ``ok`` path, end to end, via the CLI."""

import json
import subprocess
import sys

import pytest
from conftest import POLICIES, SCRIPTS
from helpers import run_cli

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    folder = tmp_path_factory.mktemp("heldout")
    subprocess.run(
        [
            sys.executable,
            str(SCRIPTS / "sms_to_parquet.py"),
            str(folder / "sms"),
            "--split",
            "heldout",
            "--shards",
            "2",
            "--limit",
            "300",
        ],
        check=True,
    )
    subprocess.run(
        [
            sys.executable,
            str(SCRIPTS / "moderation_to_parquet.py"),
            str(folder / "mod"),
            "--split",
            "heldout",
        ],
        check=True,
    )
    return folder


def test_held_out_sms_is_labelled_ok_and_scored(tmp_path, heldout, tiny_trained_model):
    out = tmp_path / "labels"
    run_cli(
        "label",
        "--input",
        str(heldout / "sms"),
        "--policy",
        str(POLICIES / "spam.md"),
        "--policy",
        str(POLICIES / "harassment.md"),
        "--model",
        str(tiny_trained_model),
        "--output",
        str(out),
        "--temperature",
        "0",
        "--max-model-len",
        "4096",
        "--max-tokens",
        "256",
    )
    report_path = tmp_path / "eval.json"
    shown = run_cli(
        "eval",
        "--labels",
        str(out),
        "--gold",
        str(heldout / "sms"),
        "--json",
        str(report_path),
    )
    assert "| spam |" in shown.stdout
    report = json.loads(report_path.read_text())
    spam = report["per_policy"]["spam"]
    assert spam["support"] == 300
    # The model answers in well-formed harmony, and its verdict tracks the content.
    assert spam["not_ok"] <= 3
    assert spam["f1"] is not None and spam["f1"] >= 0.8, spam
    manifest = json.loads(next((out / "_runs").glob("*.json")).read_text())
    assert manifest["counts"]["status"]["ok"] >= 0.99 * 600
    # SMS messages are not harassment: the verdict depends on the developer message. The
    # trained weights differ between machine kinds (AVX-512: 297+ ok; AVX2: 295), so the bar
    # is 97% well-formed, not an exact count.
    rows = manifest["per_policy"]["harassment"]["status"]
    assert rows["ok"] >= 0.97 * 300
    # Every ok label has a score read from the verdict token, and it ranks spam above ham.
    assert spam["scored"] >= 0.99 * 300 and spam["roc_auc"] >= 0.8, spam["roc_auc"]
    assert 0 <= spam["ece"] <= 1
