"""Nightly backfills: the label store, in-run deduplication and sample runs."""

import json
from collections import Counter
from pathlib import Path

import pytest
from conftest import write_parquet
from helpers import answering, rows_of, run

from batch.engine.scripted import ScriptedEngine
from batch.flow.read import inspect_inputs
from batch.flow.sources import resolve_sources
from batch.policy.files import load_policies
from batch.reports.verify import verify


def day(folder, name, texts):
    return write_parquet(
        folder / f"{name}.parquet",
        {"id": [f"{name}-{i}" for i in range(len(texts))], "text": texts},
    )


def test_nightly_run_sends_only_new_rows_and_carries_labels_over(tmp_path, policies):
    shards = tmp_path / "shards"
    day(shards, "day1", [f"message {i}" for i in range(7)])
    first = answering()
    one = run([shards], policies, tmp_path / "out", first, chunk_size=3)
    assert first.requests_seen == 7 * 2
    assert one.manifest["per_policy"]["spam"]["requests_sent"] == 7

    # The next night: yesterday's shard, plus a new one that repeats two old messages.
    day(shards, "day2", ["message 1", "brand new", "message 5", "also new"])
    second = answering()
    two = run([shards], policies, tmp_path / "out", second, chunk_size=3)
    assert second.requests_seen == 2 * 2  # only the two new texts, once per policy
    for policy in ("spam", "harassment"):
        counts = two.manifest["per_policy"][policy]
        assert counts == {
            **counts,
            "rows": 11,
            "kept": 7,
            "requests_sent": 2,
            "reused": 2,
            "deduplicated": 0,
        }
    rows = rows_of(tmp_path / "out")
    assert len(rows) == 11 * 2
    carried = [r for r in rows if r["origin"] == "reused"]
    assert sorted(r["id"] for r in carried) == ["day2-0", "day2-0", "day2-2", "day2-2"]
    originals = {(r["content_sha256"], r["policy_id"]): r for r in rows if r["id"][:4] == "day1"}
    for row in carried:
        source = originals[(row["content_sha256"], row["policy_id"])]
        assert row["run_id"] == one.run_id == source["run_id"]  # the label's own run
        assert row["reused_by_run_id"] == two.run_id
        assert (row["label"], row["seed"], row["labelled_at"]) == (
            source["label"],
            source["seed"],
            source["labelled_at"],
        )
        assert row["source_file"].endswith("day2.parquet")
    files, _ = inspect_inputs(resolve_sources([str(shards)]), "id", "text", False)
    assert verify(tmp_path / "out", files, policies)["complete"]


def test_labels_are_only_reused_when_every_key_matches(tmp_path, policies):
    shards = tmp_path / "shards"
    day(shards, "old", ["same text", "other text"])
    run([shards], policies[:1], tmp_path / "out", answering())
    day(shards, "new", ["same text"])
    # Different settings: the earlier label is not valid for this work.
    engine = answering()
    run([shards], policies[:1], tmp_path / "out", engine, reasoning_effort="medium")
    assert engine.requests_seen == 2  # both distinct texts, nothing reused across settings
    engine = answering()
    run([shards], policies[:1], tmp_path / "out", engine, model_fingerprint="e" * 64)
    assert engine.requests_seen == 2
    # The original settings again: everything is on disk already.
    engine = answering()
    run([shards], policies[:1], tmp_path / "out", engine)
    assert engine.requests_seen == 0


def test_failed_labels_are_not_carried_over(tmp_path, policies):
    shards = tmp_path / "shards"
    day(shards, "old", ["flaky text"])
    run([shards], policies[:1], tmp_path / "out", ScriptedEngine(lambda r: "maybe"))
    day(shards, "new", ["flaky text"])
    engine = answering()
    result = run([shards], policies[:1], tmp_path / "out", engine)
    # The new row is asked afresh; the old parse_error row is retried (same content: once).
    assert engine.requests_seen == 1
    assert result.manifest["per_policy"]["spam"]["reused"] == 0
    assert {r["status"] for r in rows_of(tmp_path / "out")} == {"ok"}


def test_no_reuse_sends_everything_new(tmp_path, policies):
    shards = tmp_path / "shards"
    day(shards, "old", ["a", "b"])
    run([shards], policies[:1], tmp_path / "out", answering())
    day(shards, "new", ["a", "b"])
    engine = answering()
    run([shards], policies[:1], tmp_path / "out", engine, reuse=False)
    assert engine.requests_seen == 2


def test_identical_content_is_judged_once_per_policy_and_fanned_out(tmp_path, policies):
    shards = tmp_path / "shards"
    texts = ["dup"] * 5 + ["x", "y", "x"] + ["", "dup"]
    day(shards, "d", texts)
    engine = answering()
    # Small batches: duplicates span several engine calls and chunk files.
    result = run([shards], policies, tmp_path / "out", engine, chunk_size=3, batch_size=6)
    assert engine.requests_seen == 3 * 2  # dup, x, y per policy
    for policy in ("spam", "harassment"):
        counts = result.manifest["per_policy"][policy]
        assert counts["requests_sent"] == 3
        assert counts["deduplicated"] == 6  # 5 extra "dup", 1 extra "x"
        assert counts["decided_without_model"] == 1  # the empty text
    rows = rows_of(tmp_path / "out")
    assert len(rows) == len(texts) * 2  # still one row per input row and policy
    assert Counter(r["origin"] for r in rows) == {"model": 6, "duplicate": 12, "planner": 2}
    spam = {r["source_row"]: r for r in rows if r["policy_id"] == "spam"}
    assert len({spam[i]["seed"] for i in (0, 1, 2, 3, 4, 9)}) == 1
    assert {r["run_id"] for r in rows} == {result.run_id}


def test_sms_duplicates_are_sent_once(tmp_path, policies):
    """The shared SMS data: 5,574 messages, 403 exact duplicates -> 5,171 requests."""
    from conftest import SHARED
    from labelled_data import read_sms

    items = read_sms(SHARED / "data" / "sms-spam-collection" / "SMSSpamCollection")
    columns = {"id": [i.id for i in items], "text": [i.text for i in items]}
    path = write_parquet(tmp_path / "sms.parquet", columns)
    engine = answering()
    result = run([path], policies[:1], tmp_path / "out", engine, chunk_size=1000, batch_size=4096)
    assert result.manifest["per_policy"]["spam"]["rows"] == 5574
    assert engine.requests_seen == result.manifest["per_policy"]["spam"]["requests_sent"] == 5171
    assert result.manifest["per_policy"]["spam"]["deduplicated"] == 403


def test_sample_labels_a_reproducible_subset_and_the_full_run_completes_it(tmp_path, policies):
    shards = tmp_path / "shards"
    day(shards, "a", [f"text {i}" for i in range(10)])
    day(shards, "b", [f"other {i}" for i in range(7)])
    first, again = answering(), answering()
    run([shards], policies[:1], tmp_path / "s1", first, chunk_size=4, sample=5, sample_seed=3)
    run([shards], policies[:1], tmp_path / "s2", again, chunk_size=4, sample=5, sample_seed=3)
    picked = sorted((r["source_file"], r["source_row"]) for r in rows_of(tmp_path / "s1"))
    assert len(picked) == 5 == first.requests_seen
    assert picked == sorted((r["source_file"], r["source_row"]) for r in rows_of(tmp_path / "s2"))
    other = answering()
    run([shards], policies[:1], tmp_path / "s3", other, chunk_size=4, sample=5, sample_seed=4)
    assert picked != sorted((r["source_file"], r["source_row"]) for r in rows_of(tmp_path / "s3"))

    # The full run keeps the sampled rows and labels only the rest.
    full = answering()
    result = run([shards], policies[:1], tmp_path / "s1", full, chunk_size=4)
    assert full.requests_seen == 17 - 5
    assert result.manifest["per_policy"]["spam"]["kept"] == 5
    files, _ = inspect_inputs(resolve_sources([str(shards)]), "id", "text", False)
    report = verify(tmp_path / "s1", files, policies[:1])
    assert report["complete"] and report["policies"][0]["duplicates"] == 0


def test_a_second_sample_adds_to_the_first_without_duplicates(tmp_path, policies):
    shards = tmp_path / "shards"
    day(shards, "a", [f"text {i}" for i in range(12)])
    out = tmp_path / "out"
    run([shards], policies[:1], out, answering(), chunk_size=5, sample=4, sample_seed=1)
    run([shards], policies[:1], out, answering(), chunk_size=5, sample=6, sample_seed=2)
    rows = rows_of(out)
    keys = [r["source_row"] for r in rows]
    assert len(keys) == len(set(keys)) and 6 <= len(keys) <= 10
    files, _ = inspect_inputs(resolve_sources([str(shards)]), "id", "text", False)
    report = verify(out, files, policies[:1])["policies"][0]
    assert report["duplicates"] == 0 and report["missing"] == 12 - len(keys)


def test_sample_and_force_are_refused_together(tmp_path, policies):
    day(tmp_path / "in", "a", ["x"])
    with pytest.raises(ValueError, match="sample"):
        run([tmp_path / "in"], policies, tmp_path / "out", answering(), sample=1, force=True)


def combined_answer(request):
    from batch.vocab import load_encoding

    text = load_encoding().decode(list(request.prompt_token_ids))
    assert "# Combined content policies" in text
    user = text.rsplit("<|start|>user<|message|>", 1)[1]
    spam = 1 if "WIN" in user else 0
    harassment = {"violation": 1 if "idiot" in user else 0, "policy_category": None}
    harassment["rationale"] = "Insult." if harassment["violation"] else "Benign."
    return json.dumps({"spam": spam, "harassment": harassment})


def test_combined_mode_sends_one_request_per_item_and_writes_the_same_rows(tmp_path, policies):
    shards = tmp_path / "in"
    day(shards, "a", ["WIN a prize", "you idiot", "hello", "hello"])
    separate = answering()
    run([shards], policies, tmp_path / "separate", separate)
    combined = ScriptedEngine(combined_answer)
    result = run([shards], policies, tmp_path / "combined", combined, multi_policy="combined")
    assert separate.requests_seen == 3 * 2
    assert combined.requests_seen == 3  # one per distinct item, for both policies
    assert result.manifest["per_policy"]["spam"]["requests_sent"] == 3
    a, b = rows_of(tmp_path / "separate"), rows_of(tmp_path / "combined")
    assert len(a) == len(b) == 8
    assert set(a[0]) == set(b[0])
    got = {(r["id"], r["policy_id"]): (r["status"], r["label"]) for r in b}
    assert got[("a-0", "spam")] == ("ok", "1") and got[("a-0", "harassment")] == ("ok", "0")
    assert got[("a-1", "harassment")] == ("ok", "1") and got[("a-1", "spam")] == ("ok", "0")
    rationale = {r["id"]: r["rationale"] for r in b if r["policy_id"] == "harassment"}
    assert rationale["a-1"] == "Insult."
    # The prompt hash tells the modes apart, so neither mode's results stand in for the other.
    assert {r["prompt_sha256"] for r in a}.isdisjoint({r["prompt_sha256"] for r in b})
    assert {r["policy_sha256"] for r in a} == {r["policy_sha256"] for r in b}


def test_combined_answer_missing_a_policy_fails_only_that_policy(tmp_path, policies):
    day(tmp_path / "in", "a", ["hello"])
    engine = ScriptedEngine(lambda r: '{"spam": 0}')
    run([tmp_path / "in"], policies, tmp_path / "out", engine, multi_policy="combined")
    got = {r["policy_id"]: r for r in rows_of(tmp_path / "out")}
    assert got["spam"]["status"] == "ok"
    assert got["harassment"]["status"] == "parse_error"
    assert "lacks 'harassment'" in got["harassment"]["error"]


def test_editing_a_policy_in_combined_mode_relabels_every_policy(tmp_path, policies):
    day(tmp_path / "in", "a", ["hello"])
    run(
        [tmp_path / "in"],
        policies,
        tmp_path / "out",
        ScriptedEngine(combined_answer),
        multi_policy="combined",
    )
    edited = tmp_path / "spam.md"
    source = Path(policies[0].path).read_text()
    edited.write_text(source.replace("Spam Policy", "Spam Policy v2"))
    changed = load_policies([edited, policies[1].path])
    engine = ScriptedEngine(combined_answer)
    run([tmp_path / "in"], changed, tmp_path / "out", engine, multi_policy="combined")
    # The harassment verdict came from a prompt that held the old spam policy: asked again.
    assert engine.requests_seen == 1
