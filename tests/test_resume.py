"""Resume, retry and verify with the scripted engine (the SIGKILL tests live in test_kill.py)."""

import shutil

import pytest
from conftest import write_parquet
from helpers import make_config, rows_of, run, table_version

from batch.engine.base import SamplingSettings
from batch.engine.scripted import ScriptedEngine
from batch.reports.verify import verify
from batch.runners.local import run_label_job


@pytest.fixture
def shards(tmp_path):
    folder = tmp_path / "in"
    for name, n in (("a", 5), ("b", 4)):
        write_parquet(
            folder / f"{name}.parquet",
            {
                "id": [f"{name}{i}" for i in range(n)],
                "text": [f"{name} text {i}" for i in range(n)],
            },
        )
    return folder


def test_rerun_skips_finished_work_and_force_redoes_it(tmp_path, shards, policies):
    run([shards], policies[:1], tmp_path / "out", ScriptedEngine())
    again = ScriptedEngine()
    result = run([shards], policies[:1], tmp_path / "out", again)
    assert again.requests_seen == 0
    assert result.manifest["counts"]["kept"] == 9
    assert result.manifest["per_policy"]["spam"]["kept"] == 9
    forced = ScriptedEngine()
    run([shards], policies[:1], tmp_path / "out", forced, force=True)
    assert forced.requests_seen == 9
    assert len(rows_of(tmp_path / "out")) == 9


def test_rows_deleted_by_another_writer_are_redone_and_nothing_else(tmp_path, shards, policies):
    from deltalake import DeltaTable

    run([shards], policies[:1], tmp_path / "out", ScriptedEngine())
    DeltaTable(str(tmp_path / "out")).delete("source_file = 'a.parquet' AND source_row < 2")
    again = ScriptedEngine()
    result = run([shards], policies[:1], tmp_path / "out", again, reuse=False)
    assert again.requests_seen == 2  # the two deleted rows, though the file was complete
    assert result.manifest["counts"]["kept"] == 7
    assert verify(tmp_path / "out", make_config([shards], policies, tmp_path).inputs,
                  policies[:1])["complete"]  # fmt: skip


@pytest.mark.parametrize(
    "change",
    [
        {"sampling": SamplingSettings(temperature=1.0, top_p=1.0, max_tokens=65)},
        {"sampling": SamplingSettings(temperature=0.7, top_p=1.0, max_tokens=64)},
        {"reasoning_effort": "high"},
        {"model_fingerprint": "e" * 64},
    ],
)
def test_any_change_to_the_cache_key_means_the_work_is_redone(tmp_path, shards, policies, change):
    run([shards], policies[:1], tmp_path / "out", ScriptedEngine())
    again = ScriptedEngine()
    run([shards], policies[:1], tmp_path / "out", again, **change)
    assert again.requests_seen == 9


def test_editing_a_policy_means_its_work_is_redone(tmp_path, shards, spam_policy_path):
    from batch.policy.files import load_policies

    policy = tmp_path / "spam.md"
    shutil.copy(spam_policy_path, policy)
    run([shards], load_policies([policy]), tmp_path / "out", ScriptedEngine())
    first = table_version(tmp_path / "out")
    policy.write_text(policy.read_text() + "\nOne more rule.\n")
    again = ScriptedEngine()
    run([shards], load_policies([policy]), tmp_path / "out", again)
    assert again.requests_seen == 9
    # The current rows hold the new version; the old one stays readable by table version.
    from helpers import read_output

    from batch.output.table import LabelTable

    assert {r["policy_sha256"] for r in rows_of(tmp_path / "out")} == {
        load_policies([policy])[0].sha256
    }
    before = LabelTable(tmp_path / "out").scan(version=first).collect()
    assert before.height == 9 and before["policy_sha256"].n_unique() == 1
    assert before["policy_sha256"][0] != rows_of(tmp_path / "out")[0]["policy_sha256"]
    assert read_output(tmp_path / "out").num_rows == 9


def test_failed_rows_are_retried_with_a_fresh_seed_up_to_the_limit(tmp_path, shards, policies):
    def flaky(request):
        from batch.vocab import load_encoding

        text = load_encoding().decode(list(request.prompt_token_ids))
        return "garbage" if "a text 1" in text else "0"

    first = ScriptedEngine(flaky)
    run([shards], policies[:1], tmp_path / "out", first, max_attempts=3)
    failed = [r for r in rows_of(tmp_path / "out") if r["status"] == "parse_error"]
    assert [(r["id"], r["attempt"]) for r in failed] == [("a1", 1)]
    seeds = [failed[0]["seed"]]
    for attempt in (2, 3):
        engine = ScriptedEngine(flaky)
        run([shards], policies[:1], tmp_path / "out", engine, max_attempts=3)
        assert engine.requests_seen == 1
        row = next(r for r in rows_of(tmp_path / "out") if r["id"] == "a1")
        assert row["attempt"] == attempt
        seeds.append(row["seed"])
    assert len(set(seeds)) == 3
    done = ScriptedEngine(flaky)
    run([shards], policies[:1], tmp_path / "out", done, max_attempts=3)
    assert done.requests_seen == 0  # the limit is reached: the row keeps its status
    assert len(rows_of(tmp_path / "out")) == 9


def test_retry_failed_only_touches_failed_rows(tmp_path, shards, policies):
    broken = ScriptedEngine(lambda r: "garbage")
    run([shards], policies[:1], tmp_path / "out", broken)
    (tmp_path / "in" / "c.parquet").parent.mkdir(exist_ok=True)
    write_parquet(tmp_path / "in" / "c.parquet", {"id": ["c0"], "text": ["new"]})
    retry = ScriptedEngine()
    run([shards], policies[:1], tmp_path / "out", retry, retry_failed=True)
    assert retry.requests_seen == 9  # the new file's row is not labelled in this mode
    assert {r["status"] for r in rows_of(tmp_path / "out")} == {"ok"}
    assert len(rows_of(tmp_path / "out")) == 9


def test_engine_failure_splits_the_batch_and_isolates_the_bad_request(tmp_path, shards, policies):
    class Poisoned(ScriptedEngine):
        def generate(self, requests, sampling):
            from batch.vocab import load_encoding

            texts = [load_encoding().decode(list(r.prompt_token_ids)) for r in requests]
            if any("b text 2" in t for t in texts):
                raise RuntimeError("device-side assert")
            return super().generate(requests, sampling)

    engine = Poisoned()
    result = run([shards], policies[:1], tmp_path / "out", engine, batch_size=100)
    status = {r["id"]: (r["status"], r["error"]) for r in rows_of(tmp_path / "out")}
    assert status["b2"] == ("engine_error", "RuntimeError: device-side assert")
    assert all(s == "ok" for k, (s, _) in status.items() if k != "b2")
    assert result.manifest["counts"]["status"]["engine_error"] == 1


def test_verify_reports_missing_and_duplicated_rows(tmp_path, shards, policies):
    import pyarrow.compute as pc
    from deltalake import DeltaTable, write_deltalake

    config = make_config([shards], policies[:1], tmp_path / "out")
    run_label_job(config, ScriptedEngine())
    assert verify(tmp_path / "out", config.inputs, policies[:1])["complete"]
    table = DeltaTable(str(tmp_path / "out"))
    current = table.to_pyarrow_table()
    twice = current.filter(pc.equal(current["source_file"], "a.parquet")).slice(0, 2)
    table.delete("source_file = 'b.parquet' AND source_row < 2")
    write_deltalake(str(tmp_path / "out"), twice, mode="append")  # a foreign writer's copy
    report = verify(tmp_path / "out", config.inputs, policies[:1])
    spam = report["policies"][0]
    assert not report["complete"]
    assert (spam["expected"], spam["missing"], spam["duplicates"]) == (9, 2, 2)


def test_files_a_killed_writer_left_behind_are_not_data(tmp_path, shards, policies):
    """A data file no commit names (a writer killed before its commit) is invisible."""
    import pyarrow.parquet as pq

    config = make_config([shards], policies[:1], tmp_path / "out")
    run_label_job(config, ScriptedEngine())
    (written,) = list((tmp_path / "out" / "policy_id=spam").glob("*.parquet"))[:1]
    orphan = written.with_name("part-00000-orphan.parquet")
    pq.write_table(pq.read_table(written), orphan)
    assert len(rows_of(tmp_path / "out")) == 9
    assert verify(tmp_path / "out", config.inputs, policies[:1])["policies"][0]["duplicates"] == 0
