"""diff: flip matrices, intervals and samples between two label sets."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import write_parquet
from helpers import run, table_version

from batch.cli import cli
from batch.engine.scripted import ScriptedEngine
from batch.output.labels import scan_labels
from batch.policy.files import load_policies
from batch.reports.diff.compare import DiffError, LabelSet, diff_outputs, load_label_set
from batch.reports.intervals import wilson_interval

TEXTS = [f"item {i}" for i in range(20)]


def by_rule(flip_from: int | None):
    """Spam verdict 1 for items >= 10; with ``flip_from``, also for items >= flip_from."""

    def respond(request):
        from batch.vocab import load_encoding

        text = load_encoding().decode(list(request.prompt_token_ids))
        number = int(text.rsplit("item ", 1)[1].split("<|end|>", 1)[0])
        if number == 19 and flip_from is not None:
            return "maybe"  # the edited policy confuses the model on one item
        hit = number >= 10 or (flip_from is not None and number >= flip_from)
        return "1" if hit else "0"

    return respond


@pytest.fixture
def two_versions(tmp_path, spam_policy_path):
    shards = write_parquet(
        tmp_path / "in" / "a.parquet", {"id": [f"i{i}" for i in range(20)], "text": TEXTS}
    )
    old = load_policies([spam_policy_path])
    run([shards], old, tmp_path / "out", ScriptedEngine(by_rule(None)))
    before = table_version(tmp_path / "out")
    edited = tmp_path / "spam.md"
    source = spam_policy_path.read_text().replace('version = "1"', 'version = "2"')
    edited.write_text(source.replace("## Definitions", "## Definitions\nStricter.\n"))
    new = load_policies([edited])
    run([shards], new, tmp_path / "out", ScriptedEngine(by_rule(6)))
    return tmp_path / "out", old[0], new[0], before


def test_diff_reports_flip_matrix_rate_interval_and_examples(two_versions):
    out, old, new, before = two_versions
    report = diff_outputs(
        LabelSet(str(out), {"policy_sha256": old.sha256[:12]}, version=before),
        LabelSet(str(out), {"policy_version": "2"}),
        examples=3,
        seed=1,
    )
    (p,) = report["policies"]
    assert p["shared"] == 20 and p["only_old"] == 0 == p["only_new"]
    # Items 6-9 flip 0 -> 1; item 19 goes from 1 to a parse error.
    assert p["matrix"] == {"0": {"0": 6, "1": 4}, "1": {"1": 9, "parse_error": 1}}
    assert p["transitions"] == {"0->1": 4, "1->parse_error": 1}
    assert p["flips"] == 5 and p["flip_rate"] == 0.25
    assert p["label_flips"] == 4 and p["both_ok"] == 19
    assert p["flip_rate_ci95"] == pytest.approx(list(wilson_interval(5, 20)))
    assert len(p["examples"]) == 3
    assert all(e["text"].startswith("item ") for e in p["examples"])
    again = diff_outputs(LabelSet(str(out), version=before), LabelSet(str(out)), examples=3, seed=1)
    assert again["policies"][0]["examples"] == p["examples"]
    assert {v["policy_sha256"] for v in p["old_versions"]} == {old.sha256}
    assert {v["policy_sha256"] for v in p["new_versions"]} == {new.sha256}


def test_wilson_interval_matches_hand_computation():
    lo, hi = wilson_interval(5, 20)
    # p = 0.25, z = 1.96: centre 0.2877, half-width 0.1814 (Wilson 1927).
    assert lo == pytest.approx(0.1119, abs=1e-4) and hi == pytest.approx(0.4687, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0) is None


def test_previous_labels_stay_readable_by_version_and_the_current_ones_are_one_per_row(
    two_versions,
):
    out, old, new, before = two_versions
    current = scan_labels(out).collect()
    assert current.height == 20 and set(current["policy_sha256"]) == {new.sha256}
    earlier = scan_labels(out, version=before).collect()
    assert earlier.height == 20 and set(earlier["policy_sha256"]) == {old.sha256}


def test_latest_label_per_row_counts_within_a_set(two_versions, tmp_path):
    out, old, _, _ = two_versions
    both = load_label_set(out, {"policy_id": "spam"})
    assert both.height == 20  # one row per (source row, policy): the newest label
    assert set(both["policy_version"]) == {"2"}


def test_comparing_a_set_with_itself_is_refused(two_versions):
    out, _, _, _ = two_versions
    with pytest.raises(DiffError, match="same labels"):
        diff_outputs(LabelSet(str(out)), LabelSet(str(out)))


def test_diff_command_writes_markdown_and_json(two_versions, tmp_path):
    out, old, _, before = two_versions
    result = CliRunner().invoke(
        cli,
        [
            "diff",
            str(out),
            str(out),
            "--old-version",
            str(before),
            "--new-where",
            "policy_version=2",
            "--json",
            str(tmp_path / "d.json"),
            "--markdown",
            str(tmp_path / "d.md"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "| **0** | 6 | 4 | 0 |" in result.output
    assert "5 flipped = 25.00%" in result.output
    report = json.loads((tmp_path / "d.json").read_text())
    assert report["policies"][0]["flips"] == 5
    assert Path(tmp_path / "d.md").read_text() == result.output.rstrip("\n") + "\n"
    bad = CliRunner().invoke(cli, ["diff", str(out), str(out), "--old-where", "colour=red"])
    assert bad.exit_code == 2 and "COLUMN=VALUE" in bad.output


def test_diff_between_two_outputs_matches_on_id(tmp_path, spam_policy_path):
    policies = load_policies([spam_policy_path])
    a = write_parquet(
        tmp_path / "a" / "x.parquet", {"id": ["p", "q"], "text": ["item 1", "item 12"]}
    )
    b = write_parquet(
        tmp_path / "b" / "y.parquet", {"id": ["q", "p"], "text": ["item 12", "item 1"]}
    )
    run([a], policies, tmp_path / "oa", ScriptedEngine(by_rule(None)))
    run([b], policies, tmp_path / "ob", ScriptedEngine(lambda r: "1"))
    report = diff_outputs(LabelSet(str(tmp_path / "oa")), LabelSet(str(tmp_path / "ob")), on="id")
    assert report["policies"][0]["matrix"] == {"0": {"1": 1}, "1": {"1": 1}}
