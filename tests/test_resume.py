"""Resume, retry and verify with the scripted engine (the SIGKILL tests live in test_kill.py)."""

import shutil

import pyarrow.dataset as ds
import pytest
from conftest import write_parquet
from helpers import make_config, run

from batch.engine.base import SamplingSettings
from batch.engine.scripted import ScriptedEngine
from batch.reports.verify import verify
from batch.runners.local import run_label_job


def rows_of(output):
    return ds.dataset(str(output), format="parquet").to_table().to_pylist()


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


def test_a_missing_chunk_is_redone_and_nothing_else(tmp_path, shards, policies):
    run([shards], policies[:1], tmp_path / "out", ScriptedEngine())
    victim = sorted((tmp_path / "out" / "policy_id=spam").glob("*.parquet"))[0]
    victim.unlink()
    again = ScriptedEngine()
    run([shards], policies[:1], tmp_path / "out", again)
    assert again.requests_seen == 2  # chunk_size 2
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
    policy.write_text(policy.read_text() + "\nOne more rule.\n")
    again = ScriptedEngine()
    run([shards], load_policies([policy]), tmp_path / "out", again)
    assert again.requests_seen == 9
    # Both versions are kept, told apart by policy_sha256.
    assert len({r["policy_sha256"] for r in rows_of(tmp_path / "out")}) == 2


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
    config = make_config([shards], policies[:1], tmp_path / "out")
    run_label_job(config, ScriptedEngine())
    assert verify(tmp_path / "out", config.inputs, policies[:1])["complete"]
    files = sorted((tmp_path / "out" / "policy_id=spam").glob("*.parquet"))
    shutil.copy(files[0], files[0].with_name("copy-" + files[0].name))
    files[1].unlink()
    report = verify(tmp_path / "out", config.inputs, policies[:1])
    spam = report["policies"][0]
    assert not report["complete"]
    assert (spam["expected"], spam["missing"], spam["duplicates"]) == (9, 2, 2)


def test_stale_temporaries_of_dead_runs_are_removed(tmp_path, shards, policies):
    import socket

    tmp = tmp_path / "out" / "_tmp"
    tmp.mkdir(parents=True)
    dead = tmp / f"part-x.{socket.gethostname()}.999999999.abcd1234.tmp"
    alive = tmp / f"part-y.{socket.gethostname()}.1.abcd1234.tmp"  # pid 1 is alive
    dead.write_bytes(b"x")
    alive.write_bytes(b"x")
    run([shards], policies[:1], tmp_path / "out", ScriptedEngine())
    assert not dead.exists() and alive.exists()
