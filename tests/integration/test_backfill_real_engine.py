"""Nightly job, relabel + diff and combined mode through the real engine (trained tiny model)."""

import json

import polars as pl
import pytest
from conftest import POLICIES, ROOT, SHARED, write_parquet
from helpers import run_cli
from labelled_data import read_sms

from batch.output.schema import STATUSES

pytestmark = pytest.mark.integration

FAST = ["--set", "temperature=0", "--set", "max_tokens=256", "--set", "max_model_len=4096"]


def greedy(model, max_tokens):
    """The tiny model's settings: greedy, short answers, a context that fits the policies."""
    return ["--model", str(model), "--temperature", "0", "--max-tokens", str(max_tokens),
            "--max-model-len", "4096"]  # fmt: skip


def distinct_sms(n, skip=0):
    seen, items = set(), []
    for item in read_sms(SHARED / "data" / "sms-spam-collection" / "SMSSpamCollection"):
        if item.text not in seen:
            seen.add(item.text)
            items.append(item)
    return items[skip : skip + n]


def shard(path, items):
    return write_parquet(path, {"id": [i.id for i in items], "text": [i.text for i in items]})


def manifests(out):
    found = [json.loads(p.read_text()) for p in (out / "_runs").glob("*.json")]
    return sorted(found, key=lambda m: m["started_at"])


def test_nightly_job_relabel_and_diff(tmp_path, tiny_trained_model):
    root, out = tmp_path / "content", tmp_path / "labels"
    old = distinct_sms(60)
    shard(root / "date=2026-11-26" / "part-0.parquet", old)
    nightly = [
        "run",
        str(ROOT / "jobs" / "nightly-backfill.toml"),
        "--date",
        "2026-11-26",
        "--set",
        f"output={out}",
        "--set",
        f"model={tiny_trained_model}",
        "--set",
        f"policies=['{POLICIES / 'spam.md'}', '{POLICIES / 'harassment.md'}']",
        "--set",
        "inputs=['" + str(root) + "/']",  # every day so far, as the spec's comment suggests
        "--set",
        f"source_root={root}",
        *FAST,
    ]
    run_cli(*nightly)
    (first,) = manifests(out)
    assert first["counts"]["requests"] == 60 * 2
    assert first["job_spec"]["date"] == "2026-11-26"
    assert first["job_spec"]["spec"]["output"] == str(out)

    # The next night: a new shard with 25 new messages and 10 that were seen before.
    shard(root / "date=2026-11-27" / "part-0.parquet", distinct_sms(25, skip=60) + old[:10])
    run_cli(*nightly[:3], "2026-11-27", *nightly[4:])
    second = manifests(out)[1]
    assert second["counts"]["requests"] == 25 * 2  # only the new rows reached the engine
    for policy in ("spam", "harassment"):
        counts = second["per_policy"][policy]
        assert (counts["rows"], counts["kept"], counts["requests_sent"]) == (95, 60, 25)
        ok_before = first["per_policy"][policy]["status"]["ok"]
        assert counts["reused"] == 10 or ok_before < 60  # only ok labels are carried over

    # A policy edit: relabel a reproducible sample, see what flips.
    edited = tmp_path / "spam.md"
    text = (POLICIES / "spam.md").read_text().replace('version = "1"', 'version = "2"')
    harassment_body = (POLICIES / "harassment.md").read_text().split("+++", 2)[2]
    edited.write_text(
        text.split("+++", 2)[0] + "+++" + text.split("+++", 2)[1] + "+++" + harassment_body
    )
    shown = run_cli(
        "relabel",
        "--input",
        str(root),
        "--policy",
        str(edited),
        "--output",
        str(out),
        *greedy(tiny_trained_model, 256),
        "--sample",
        "30",
        "--examples",
        "5",
    )
    assert "# Label diff" in shown.stdout and "## spam" in shown.stdout
    assert len(manifests(out)) == 2  # the sample went to a candidate table, not the output
    (candidate,) = (out / "_candidates").iterdir()
    (relabel,) = manifests(candidate)
    assert relabel["counts"]["rows"] == 30
    (report_path,) = (out / "_diffs").glob("*.json")
    (spam,) = json.loads(report_path.read_text())["policies"]
    assert spam["shared"] == 30
    # The report's flips are exactly the rows whose outcome differs between the two versions.
    outcome = pl.when(pl.col("status") == "ok").then(pl.col("label")).otherwise(pl.col("status"))
    spam_rows = pl.col("policy_id") == "spam"
    new = pl.read_delta(str(candidate)).filter(spam_rows).with_columns(outcome=outcome)
    previous = pl.read_delta(str(out)).filter(spam_rows).with_columns(outcome=outcome)
    assert previous.height == 95  # the current labels did not change
    assert set(previous["policy_version"]) == {"1"} and set(new["policy_version"]) == {"2"}
    joined = new.join(previous, on=["source_file", "source_row"], suffix="_old")
    assert spam["flips"] == joined.filter(pl.col("outcome") != pl.col("outcome_old")).height
    assert sum(sum(row.values()) for row in spam["matrix"].values()) == 30
    assert len(spam["examples"]) == min(5, spam["flips"])


def test_combined_mode_through_the_real_engine(tmp_path, tiny_trained_model):
    items = distinct_sms(20)
    shard(tmp_path / "in" / "a.parquet", items)
    out = tmp_path / "out"
    run_cli(
        "label",
        "--input",
        str(tmp_path / "in"),
        "--policy",
        str(POLICIES / "spam.md"),
        "--policy",
        str(POLICIES / "harassment.md"),
        "--output",
        str(out),
        *greedy(tiny_trained_model, 64),
        "--multi-policy",
        "combined",
    )
    (manifest,) = manifests(out)
    assert manifest["counts"]["requests"] == 20  # one request per item for both policies
    assert manifest["multi_policy"] == "combined"
    rows = pl.read_delta(str(out))
    assert rows.height == 40 and set(rows["status"]) <= set(STATUSES)
    assert rows.group_by("policy_id").len().sort("policy_id")["len"].to_list() == [20, 20]
