"""The report in a real browser: headless Chromium loads it with no console error and no
network request, and shows the figures of the manifest and of eval.

Chromium is Debian's package, installed by scripts/setup_dev.sh. The screenshot is kept at
test-artifacts/report.png for CI.
"""

import json
import sys

import pytest
from conftest import POLICIES, ROOT, write_parquet
from helpers import answering, run
from test_report import answers

from batch.policy.files import load_policies
from batch.reports.html.page import write_report

sys.path.insert(0, str(ROOT / "scripts"))
from headless import find_chromium, open_page  # noqa: E402

ARTIFACT = ROOT / "test-artifacts" / "report.png"


@pytest.fixture(scope="module")
def chromium():
    path = find_chromium()
    if path is None:
        pytest.skip("chromium is not installed (bash scripts/setup_dev.sh installs it)")
    return path


def test_the_harness_sees_console_errors_and_requests(tmp_path, chromium):
    """Not vacuous: a page that logs an error and fetches an image is caught doing both."""
    page = tmp_path / "bad.html"
    page.write_text('<img src="http://192.0.2.1/x.png"><script>console.error("boom")</script>')
    seen = open_page(page, chromium=chromium)
    assert "boom" in seen["console"] and seen["requests"] == ["http://192.0.2.1/x.png"]


def test_the_report_loads_clean_and_shows_the_manifests_figures(tmp_path, chromium):
    policies = load_policies([POLICIES / "spam.md", POLICIES / "harassment.md"])
    texts = ["win a prize", "a prize", "weird", "", "hello", "see you <b>bold</b>", "ok"]
    gold = write_parquet(tmp_path / "in" / "a.parquet", {"id": [str(i) for i in range(7)],
                         "text": texts, "spam": [1, 1, 0, 0, 0, 0, 0]})  # fmt: skip
    result = run([gold], policies, tmp_path / "out", answering(answers))
    page = tmp_path / "report.html"
    data = write_report(tmp_path / "out", page, gold)
    ARTIFACT.parent.mkdir(exist_ok=True)
    seen = open_page(page, ARTIFACT, chromium)
    assert seen["console"] == [] and seen["requests"] == []
    shown, manifest = seen["figures"], result.manifest
    for pid, counts in manifest["per_policy"].items():
        assert shown[f"{pid}.rows"] == str(counts["rows"])
        for status, n in counts["status"].items():
            assert shown[f"{pid}.status.{status}"] == str(n)
    run_id = manifest["run_id"]
    assert shown[f"run.{run_id}.requests_sent"] == str(manifest["counts"]["requests_sent"])
    assert shown[f"run.{run_id}.completion_tokens"] == str(manifest["tokens"]["completion"])
    spam = data["eval"]["per_policy"]["spam"]
    assert float(shown["eval.spam.recall"]) == spam["recall"] == 1.0
    assert ARTIFACT.stat().st_size > 10_000
    json.dumps(data, default=str)  # what --json writes
