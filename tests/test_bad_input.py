"""Every case of scripts/make_bad_inputs.py: a status per row, or a clear error per file."""

import pytest
from helpers import make_config, rows_of

from batch.engine.scripted import ScriptedEngine
from batch.flow.read import InputError, inspect_inputs
from batch.flow.sources import resolve_sources
from batch.reports.verify import verify
from batch.runners.local import run_label_job


@pytest.fixture
def bad_dir(tmp_path):
    import make_bad_inputs

    folder = tmp_path / "bad"
    make_bad_inputs.make(folder)
    return folder


def test_bad_files_fail_the_run_before_any_work_by_default(bad_dir):
    with pytest.raises(InputError) as info:
        inspect_inputs(resolve_sources([str(bad_dir)]), "id", "text")
    assert "missing_text_column.parquet" in str(info.value)


@pytest.mark.parametrize(
    "name, message",
    [
        ("text_not_string.parquet", "text column 'text' has type int64, not a string"),
        ("missing_text_column.parquet", "missing column 'text'; it has id, body"),
        ("not_parquet.parquet", "not a readable Parquet file"),
        ("truncated.parquet", "not a readable Parquet file"),
    ],
)
def test_each_unusable_file_gets_a_message_naming_it(bad_dir, name, message):
    _, skipped = inspect_inputs([str(bad_dir / name)], "id", "text", skip_bad=True)
    assert len(skipped) == 1
    assert skipped[0]["path"].endswith(name) and message in skipped[0]["error"]


def test_broken_directory_runs_to_completion_with_skip(tmp_path, bad_dir, policies):
    files, skipped = inspect_inputs(resolve_sources([str(bad_dir)]), "id", "text", skip_bad=True)
    assert {s["path"].rsplit("/", 1)[1] for s in skipped} == {
        "text_not_string.parquet",
        "missing_text_column.parquet",
        "not_parquet.parquet",
        "truncated.parquet",
    }
    engine = ScriptedEngine()
    config = make_config(
        [bad_dir], policies[:1], tmp_path / "out", max_model_len=4096, chunk_size=3,
        on_bad_file="skip", skipped_files=skipped,
    )  # fmt: skip
    config.inputs = files
    result = run_label_job(config, engine)
    assert {s["path"] for s in result.manifest["skipped_files"]} == {s["path"] for s in skipped}
    rows = rows_of(tmp_path / "out")
    by_id = {(r["source_file"], r["id"]): r for r in rows}
    status = {key: r["status"] for key, r in by_id.items()}
    assert [status[("empty_texts.parquet", f"e{i}")] for i in range(1, 5)] == ["empty_input"] * 4
    assert status[("empty_texts.parquet", "e5")] == "ok"
    assert status[("too_long.parquet", "t2")] == "too_long"
    assert status[("too_long.parquet", "t1")] == status[("too_long.parquet", "t3")] == "ok"
    assert status[("very_long_line.parquet", "l1")] == "too_long"
    assert "not tokenized" in by_id[("very_long_line.parquet", "l1")]["error"]
    int_rows = [r for r in rows if r["source_file"].endswith("int_ids_duplicated.parquet")]
    assert sorted(r["id"] for r in int_rows) == ["7", "7", "8", "9", "9"]
    # Arrow's own cast decides the text of a float id.
    assert {r["id"] for r in rows if r["source_file"].endswith("float_ids.parquet")} == {
        "1.5",
        "2",
    }
    assert len([r for r in rows if r["source_file"].endswith("binary_ids.parquet")]) == 2
    for name in ("dictionary_text", "large_string_text", "unicode", "special_tokens"):
        mine = [r for r in rows if r["source_file"].endswith(f"{name}.parquet")]
        assert mine and all(r["status"] == "ok" for r in mine), name
    assert not [r for r in rows if r["source_file"].endswith("zero_rows.parquet")]
    grouped = sorted(
        (r["source_row"], r["id"]) for r in rows if "several_row_groups" in r["source_file"]
    )
    assert grouped == [(i, f"g{i}") for i in range(7)]
    report = verify(tmp_path / "out", files, policies[:1])
    assert report["complete"], report
    assert report["policies"][0]["expected"] == sum(f.num_rows for f in files)
    # Never sent: empty, too long; identical texts (the int-id file repeats rows) go once.
    sent = [r for r in rows if r["status"] not in ("empty_input", "too_long")]
    assert len(sent) == len(rows) - 4 - 2
    assert engine.requests_seen == len({r["content_sha256"] for r in sent}) < len(sent)
