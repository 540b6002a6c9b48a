"""The report in a real browser: headless Chromium loads it with no console error and no
network request, and shows the figures of the manifest and of eval.

Chromium is Debian's package, installed by scripts/setup_dev.sh. The screenshots are kept for
CI: the page at test-artifacts/report.png, each section at test-artifacts/report/<id>.png.
"""

import json
import sys
from pathlib import Path

import pytest
from conftest import POLICIES, ROOT, write_parquet
from helpers import answering, run
from test_report import _varied, answers

from batch.policy.files import load_policies
from batch.reports.html.page import write_report

sys.path.insert(0, str(ROOT / "scripts"))
from headless import find_chromium, open_page  # noqa: E402

ARTIFACT = ROOT / "test-artifacts" / "report.png"
SECTIONS = ROOT / "test-artifacts" / "report"


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


def test_every_section_fits_a_1280_px_page_and_is_screenshot(tmp_path, chromium):
    """Two runs (the second retries failures and flips them), long texts and a wide runs
    table: nothing sticks out of a 1,280-px window but inside its own scrolling box."""
    policies = load_policies([POLICIES / "spam.md", POLICIES / "harassment.md"])
    texts = [f"{kind} {i}" for i in range(6) for kind in ("prize " * 80, "weird", "hello")]
    source = tmp_path / "in" / "a.parquet"
    write_parquet(source, {"id": [f"r{i}" for i in range(18)], "text": texts})
    run([source], policies, tmp_path / "out", _varied())
    run([source], policies, tmp_path / "out", _varied(flip_weird=True))
    page = tmp_path / "report.html"
    write_report(tmp_path / "out", page)
    seen = open_page(page, chromium=chromium, width=1280, sections_to=SECTIONS)
    assert seen["console"] == [] and seen["requests"] == []
    assert seen["scroll_width"] <= 1280 and seen["overflowing"] == []
    expected = {"overview", "policy-spam", "policy-harassment", "changes", "runs"}
    assert set(seen["sections"]) == expected
    for path in seen["section_screenshots"]:
        assert Path(path).stat().st_size > 5_000
    assert seen["figures"]["changes.spam.flips"] == "6"
    assert seen["figures"]["spam.examples.violation"] == "5"


def test_the_width_check_sees_a_page_that_runs_off_the_window(tmp_path, chromium):
    """Not vacuous: an element wider than the window outside a scrolling box is reported."""
    page = tmp_path / "wide.html"
    wide = '<div style="width:2000px">x</div>'
    boxed = '<div class="scroll" style="overflow-x:auto"><p style="width:3000px">fine</p></div>'
    page.write_text(f'<!DOCTYPE html><section id="a"><table><tr><td>{wide}</td></tr></table>'
                    f"</section>{boxed}")  # fmt: skip
    seen = open_page(page, chromium=chromium, width=1280)
    assert seen["scroll_width"] > 1280 and "table" in seen["overflowing"]
    assert "p" not in seen["overflowing"]  # inside a scrolling box: fine
