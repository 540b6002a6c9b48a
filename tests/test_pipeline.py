import json

import pytest
from helpers import make_config, read_output, run, table_version

from batch.engine.scripted import ScriptedEngine, harmony_completion
from batch.output.schema import OUTPUT_SCHEMA, STATUSES
from batch.output.table import LabelTable
from batch.runners.local import run_label_job


def verdict_by_text(request):
    """Answer 1 for prize/ringtone messages, 0 otherwise, in each policy's format."""
    from batch.vocab import load_encoding

    text = load_encoding().decode(list(request.prompt_token_ids))
    user = text.rsplit("<|start|>user<|message|>", 1)[1]
    hit = "WIN" in user or "ringtones" in user
    if "# Harassment and Hate Policy" in text:
        return json.dumps({"violation": 0, "policy_category": None, "rationale": "Not abusive."})
    return "1" if hit else "0"


def test_one_row_per_input_row_and_policy_with_the_documented_schema(
    tmp_path, small_shards, policies
):
    engine = ScriptedEngine(verdict_by_text)
    result = run([small_shards], policies, tmp_path / "out", engine)
    table = read_output(tmp_path / "out")
    assert table.num_rows == 5 * 2
    table_schema = LabelTable(tmp_path / "out").open().to_pyarrow_dataset().schema
    assert table_schema.remove_metadata() == OUTPUT_SCHEMA
    rows = table.to_pylist()
    assert {(r["id"], r["policy_id"]) for r in rows} == {
        (i, p) for i in ("a0", "a1", "a2", "b0", "b1") for p in ("spam", "harassment")
    }
    assert {r["status"] for r in rows} <= set(STATUSES)
    spam = {r["id"]: r for r in rows if r["policy_id"] == "spam"}
    assert spam["a0"]["label"] == "1" and spam["a0"]["violation"] is True
    assert spam["a1"]["violation"] is False
    # The injected special-token text is just content: labelled like any other row.
    assert spam["a2"]["status"] == "ok"
    harassment = [r for r in rows if r["policy_id"] == "harassment"]
    assert all(r["rationale"] == "Not abusive." for r in harassment)
    by_policy = {p.id: p for p in policies}
    assert all(r["policy_sha256"] == by_policy[r["policy_id"]].sha256 for r in rows)
    assert {r["run_id"] for r in rows} == {result.run_id}
    # A row is (source file relative to its input folder, row number); the path it was read
    # from is kept beside it.
    assert {(r["source_file"], r["source_row"]) for r in rows} == {
        (f, i) for f, n in (("a.parquet", 3), ("b.parquet", 2)) for i in range(n)
    }
    assert all(r["source_path"] == str(small_shards / r["source_file"]) for r in rows)


def test_requests_are_grouped_by_policy_and_seeds_are_reproducible(
    tmp_path, small_shards, policies
):
    first, second = ScriptedEngine(), ScriptedEngine()
    run([small_shards], policies, tmp_path / "one", first, batch_size=10_000)
    run([small_shards], policies, tmp_path / "two", second, batch_size=10_000)
    from batch.flow.render import render_prefix

    assert len(first.calls) == 1
    prefixes = {p.id: list(render_prefix(p).token_ids) for p in policies}

    def policy_of(request):
        ids = list(request.prompt_token_ids)
        return next(pid for pid, pre in prefixes.items() if ids[: len(pre)] == pre)

    order = [policy_of(r) for r in first.calls[0]]
    # Policy-major: all requests of one policy, then all of the next.
    assert order == ["spam"] * 5 + ["harassment"] * 5
    assert [r.seed for r in first.calls[0]] == [r.seed for r in second.calls[0]]
    assert len({r.seed for r in first.calls[0]}) == len(first.calls[0])


def test_seed_changes_with_any_generation_setting(tmp_path, small_shards, policies):
    from batch.engine.base import SamplingSettings

    base, hotter = ScriptedEngine(), ScriptedEngine()
    run([small_shards], policies, tmp_path / "a", base)
    run(
        [small_shards],
        policies,
        tmp_path / "b",
        hotter,
        sampling=SamplingSettings(temperature=0.5, top_p=1.0, max_tokens=64),
    )
    seeds = lambda e: [r.seed for call in e.calls for r in call]  # noqa: E731
    assert not set(seeds(base)) & set(seeds(hotter))


def test_empty_and_whitespace_rows_skip_the_engine(tmp_path, policies):
    from conftest import write_parquet

    write_parquet(
        tmp_path / "in" / "x.parquet",
        {"id": [1, 2, 3, 4], "text": ["real text", None, "", " \n\t"]},
    )
    engine = ScriptedEngine()
    run([tmp_path / "in"], policies, tmp_path / "out", engine)
    assert engine.requests_seen == 2  # one real row x two policies
    rows = read_output(tmp_path / "out").to_pylist()
    status = {(r["id"], r["policy_id"]): r["status"] for r in rows}
    assert status[("1", "spam")] == "ok"
    assert [status[(i, "spam")] for i in ("2", "3", "4")] == ["empty_input"] * 3
    assert all(r["content_sha256"] is None for r in rows if r["id"] == "2")


def test_over_long_items_get_too_long_and_the_rest_proceed(tmp_path, policies):
    from conftest import write_parquet

    write_parquet(
        tmp_path / "in" / "x.parquet", {"id": ["short", "long"], "text": ["hi", "word " * 3000]}
    )
    engine = ScriptedEngine()
    run([tmp_path / "in"], policies, tmp_path / "out", engine, max_model_len=1500)
    rows = {(r["id"], r["policy_id"]): r for r in read_output(tmp_path / "out").to_pylist()}
    assert rows[("long", "spam")]["status"] == "too_long"
    assert rows[("long", "spam")]["prompt_tokens"] > 1500
    assert "max_model_len 1500" in rows[("long", "spam")]["error"]
    assert rows[("short", "spam")]["status"] == "ok"
    assert engine.requests_seen == 2


def test_every_model_outcome_becomes_a_status(tmp_path, policies):
    from conftest import write_parquet

    answers = {
        "good": "1",
        "bad": "perhaps",
        "cut": harmony_completion("1", "thinking " * 200, max_tokens=8),
        "silent": harmony_completion(None, "no verdict"),
    }
    write_parquet(tmp_path / "in" / "x.parquet", {"id": list(answers), "text": list(answers)})

    def respond(request):
        from batch.vocab import load_encoding

        text = load_encoding().decode(list(request.prompt_token_ids))
        return answers[text.rsplit("<|message|>", 1)[1].split("<|end|>")[0]]

    run([tmp_path / "in"], policies[:1], tmp_path / "out", ScriptedEngine(respond))
    status = {r["id"]: r["status"] for r in read_output(tmp_path / "out").to_pylist()}
    assert status == {
        "good": "ok",
        "bad": "parse_error",
        "cut": "truncated",
        "silent": "parse_error",
    }


def test_engine_exception_becomes_engine_error_rows_and_the_run_finishes(
    tmp_path, small_shards, policies
):
    class Broken(ScriptedEngine):
        def generate(self, requests, sampling):
            raise RuntimeError("CUDA out of memory")

    result = run([small_shards], policies, tmp_path / "out", Broken())
    rows = read_output(tmp_path / "out").to_pylist()
    assert len(rows) == 10
    assert {r["status"] for r in rows} == {"engine_error"}
    assert all("CUDA out of memory" in r["error"] for r in rows)
    assert result.manifest["counts"]["status"]["engine_error"] == 10


def test_manifest_records_what_is_needed_to_audit_the_run(tmp_path, small_shards, policies):
    result = run([small_shards], policies, tmp_path / "out", ScriptedEngine(verdict_by_text))
    path = tmp_path / "out" / "_runs" / f"{result.run_id}.json"
    manifest = json.loads(path.read_text())
    assert manifest["state"] == "finished"
    assert {p["policy_sha256"] for p in manifest["policies"]} == {p.sha256 for p in policies}
    assert manifest["sampling"] == {"temperature": 1.0, "top_p": 1.0, "max_tokens": 64}
    assert manifest["model_fingerprint"] == "f" * 64
    assert manifest["counts"]["rows"] == 5
    assert manifest["counts"]["labelled"] == 10
    assert manifest["counts"]["status"]["ok"] == 10
    assert set(manifest["versions"]) >= {"openai-harmony", "pyarrow", "vllm", "torch"}
    assert manifest["timing"]["items_per_second"] > 0
    assert manifest["started_at"] and manifest["finished_at"]
    from batch.runners.run import summary_line

    assert summary_line(result).startswith(f"run {result.run_id}: 5 rows x 2 policies: 10 labelled")


def test_rerunning_the_same_work_commits_nothing_and_never_duplicates(
    tmp_path, small_shards, policies
):
    from helpers import answering

    run([small_shards], policies, tmp_path / "out", answering())
    version = table_version(tmp_path / "out")
    again = answering()
    run([small_shards], policies, tmp_path / "out", again)
    assert again.requests_seen == 0 and table_version(tmp_path / "out") == version
    assert read_output(tmp_path / "out").num_rows == 10


def test_output_is_a_delta_table_polars_reads_as_it_is(tmp_path, small_shards, policies):
    import polars as pl

    run([small_shards], policies, tmp_path / "out", ScriptedEngine())
    frame = pl.scan_delta(str(tmp_path / "out")).collect()
    assert frame.height == 10
    assert sorted(frame["policy_id"].unique().to_list()) == ["harassment", "spam"]


@pytest.mark.parametrize("chunk_size", [1, 2, 1000])
def test_chunks_cover_every_row_once_whatever_their_size(
    tmp_path, small_shards, policies, chunk_size
):
    config = make_config([small_shards], policies, tmp_path / "out", chunk_size=chunk_size)
    engine = ScriptedEngine()
    run_label_job(config, engine)
    table = read_output(tmp_path / "out")
    keys = set(zip(table["source_file"].to_pylist(), table["source_row"].to_pylist(),
                   table["policy_id"].to_pylist(), strict=True))  # fmt: skip
    assert table.num_rows == len(keys) == 10 == engine.requests_seen
