"""Inputs on object storage: the same rules as local files, against a real S3 API (moto's
server on loopback), reached through the standard AWS variables as a site's MinIO would be."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from conftest import POLICIES
from helpers import make_config, rows_of, run, scripted_process, table_version

from batch.cli import cli
from batch.engine.scripted import ScriptedEngine
from batch.errors import InputError, UsageError
from batch.flow.sources import known_unchanged, resolve_sources
from batch.output.index import Index
from batch.reports.diff.compare import LabelSet, diff_outputs
from batch.reports.verify import verify

SPAM = str(POLICIES / "spam.md")


def texts(s3, uri: str, rows: list[str]) -> str:
    return s3.put_parquet(uri, {"id": [f"i{i}" for i in range(len(rows))], "text": rows})


@pytest.fixture
def lake(s3_server):
    """A bucket laid out as Spark leaves a table of content: partitions, markers, temp files."""
    root = f"s3://{s3_server.bucket()}/content"
    texts(s3_server, f"{root}/day=1/part-0.parquet", ["win a prize now", "see you at 6"])
    texts(s3_server, f"{root}/day=2/part-0.parquet", ["free ringtones", "ok", "call me"])
    s3_server.put(f"{root}/_SUCCESS", b"")
    s3_server.put(f"{root}/day=1/.part-0.parquet.crc", b"crc")
    texts(s3_server, f"{root}/_temporary/0/part-9.parquet", ["half written"])
    s3_server.put(f"{root}/day=2/notes.txt", b"not parquet")
    return root


def test_a_prefix_is_read_like_a_folder_with_keys_as_identities(
    tmp_path, lake, policies, s3_server
):
    sources = resolve_sources([lake + "/"])
    assert [s for _, s in sources] == ["day=1/part-0.parquet", "day=2/part-0.parquet"]
    assert [p for p, _ in sources] == [f"{lake}/day=1/part-0.parquet",
                                       f"{lake}/day=2/part-0.parquet"]  # fmt: skip
    result = run([lake], policies[:1], tmp_path / "out", ScriptedEngine())
    rows = rows_of(tmp_path / "out")
    assert sorted((r["source_file"], r["source_row"]) for r in rows) == [
        ("day=1/part-0.parquet", 0), ("day=1/part-0.parquet", 1),
        ("day=2/part-0.parquet", 0), ("day=2/part-0.parquet", 1), ("day=2/part-0.parquet", 2),
    ]  # fmt: skip
    assert {r["source_path"] for r in rows} == {f"{lake}/day=1/part-0.parquet",
                                                f"{lake}/day=2/part-0.parquet"}  # fmt: skip
    assert result.manifest["counts"]["requests"] == 5
    report = verify(tmp_path / "out", make_config([lake], policies, tmp_path).inputs, policies[:1])
    assert report["complete"]
    done = CliRunner().invoke(cli, ["verify", "--input", lake, "--output", str(tmp_path / "out"),
                                    "--policy", SPAM])  # fmt: skip
    assert done.exit_code == 0, done.output
    s3_server.put(f"{lake}/day=2/part-1.parquet", b"")  # a new, empty (bad) object
    done = CliRunner().invoke(cli, ["verify", "--input", lake, "--output", str(tmp_path / "out"),
                                    "--policy", SPAM, "--on-bad-file", "skip"])  # fmt: skip
    assert f"not checked (unreadable): {lake}/day=2/part-1.parquet" in done.output


def test_globs_under_a_prefix_match_like_local_ones(lake):
    def found(spec):
        return [s for _, s in resolve_sources([spec])]

    assert found(f"{lake}/day=*/") == ["day=1/part-0.parquet", "day=2/part-0.parquet"]
    assert found(f"{lake}/**/*.parquet") == ["day=1/part-0.parquet", "day=2/part-0.parquet"]
    assert found(f"{lake}/day=2/*.parquet") == ["part-0.parquet"]
    assert found(f"{lake}/day=1/part-0.parquet") == ["part-0.parquet"]  # one object
    assert [s for _, s in resolve_sources([f"{lake}/day=2/*.parquet"], lake)] == [
        "day=2/part-0.parquet"
    ]
    with pytest.raises(InputError, match="matches no Parquet files"):
        found(f"{lake}/day=9*/*.parquet")
    with pytest.raises(InputError, match="no such object or prefix"):
        found(f"{lake}/nothing-here/")


def test_a_rerun_reads_nothing_and_an_edit_of_the_same_size_is_relabelled(
    tmp_path, s3_server, policies
):
    root = f"s3://{s3_server.bucket()}/in"
    texts(s3_server, f"{root}/a.parquet", ["aaaa", "bbbb", "cccc"])
    texts(s3_server, f"{root}/b.parquet", ["dddd", "eeee"])
    run([root], policies[:1], tmp_path / "out", ScriptedEngine())
    index = Index(tmp_path / "out")
    known = known_unchanged(f"{root}/a.parquet", "a.parquet", index)
    assert known is not None and known.etag  # the stamp matches: not read, not hashed
    again = ScriptedEngine()
    run([root], policies[:1], tmp_path / "out", again)
    assert again.requests_seen == 0
    # Same length and, S3 times being whole seconds, maybe the same time: the ETag tells.
    texts(s3_server, f"{root}/a.parquet", ["aaaa", "BBBB", "cccc"])
    assert known_unchanged(f"{root}/a.parquet", "a.parquet", index) is None
    assert known_unchanged(f"{root}/b.parquet", "b.parquet", index) is not None
    edited = ScriptedEngine()
    run([root], policies[:1], tmp_path / "out", edited)
    assert edited.requests_seen == 1  # the one changed row; identical content is carried over
    assert len(rows_of(tmp_path / "out")) == 5


def test_a_shrunk_object_keeps_no_label_of_its_vanished_rows(tmp_path, s3_server):
    root = f"s3://{s3_server.bucket()}/in"
    texts(s3_server, f"{root}/s.parquet", [f"message {i}" for i in range(10)])
    output = tmp_path / "out"
    assert scripted_process(root, output).returncode == 0
    texts(s3_server, f"{root}/s.parquet", [f"message {i}" for i in range(6)])
    assert scripted_process(root, output).returncode == 0
    keys = [(r["source_file"], r["source_row"], r["policy_id"]) for r in rows_of(output)]
    assert len(keys) == len(set(keys)) == 6 * 2


def test_a_run_killed_mid_way_is_finished_by_a_rerun_with_every_row_once(tmp_path, s3_server):
    root = f"s3://{s3_server.bucket()}/in"
    for shard in range(3):
        texts(s3_server, f"{root}/s{shard}.parquet", [f"m {shard} {i}" for i in range(8)])
    output = tmp_path / "out"
    killed = scripted_process(root, output, "--die-after-commits", "3")
    assert killed.returncode == 137
    assert 0 < len(rows_of(output)) < 48
    assert scripted_process(root, output).returncode == 0
    keys = [(r["source_file"], r["source_row"], r["policy_id"]) for r in rows_of(output)]
    assert len(keys) == len(set(keys)) == 3 * 8 * 2


def test_bad_objects_are_named_or_skipped_and_the_rest_labelled(tmp_path, s3_server, policies):
    root = f"s3://{s3_server.bucket()}/in"
    texts(s3_server, f"{root}/good.parquet", ["fine text"])
    s3_server.put(f"{root}/broken.parquet", b"PAR1 this is not parquet")
    with pytest.raises(InputError, match=f"{root}/broken.parquet: not a readable Parquet file"):
        make_config([root], policies, tmp_path)
    result = run([root], policies[:1], tmp_path / "out", ScriptedEngine(), on_bad_file="skip")
    assert [r["source_file"] for r in rows_of(tmp_path / "out")] == ["good.parquet"]
    assert "testing" not in json.dumps(result.manifest)  # credentials stay in the environment


def test_credentials_in_a_uri_are_refused_before_anything_is_read(s3_server):
    bucket = s3_server.bucket()
    for spec in (f"s3://AKIA:secret@{bucket}/in/", f"s3://{bucket}/in/?secret_key=x"):
        with pytest.raises(UsageError, match="not in the URI"):
            resolve_sources([spec])


def test_diff_reads_example_texts_from_the_store(tmp_path, s3_server, spam_policy_path):
    from batch.policy.files import load_policies

    root = f"s3://{s3_server.bucket()}/in"
    texts(s3_server, f"{root}/a.parquet", [f"item {i}" for i in range(6)])
    old = load_policies([spam_policy_path])
    run([root], old, tmp_path / "out", ScriptedEngine(lambda r: "0"))
    before = table_version(tmp_path / "out")
    edited = tmp_path / "spam.md"
    edited.write_text(spam_policy_path.read_text().replace("## Definitions", "## Definitions\nX\n"))
    run([root], load_policies([edited]), tmp_path / "out", ScriptedEngine(lambda r: "1"))
    report = diff_outputs(LabelSet(str(tmp_path / "out"), version=before),
                          LabelSet(str(tmp_path / "out")), examples=2, seed=1)  # fmt: skip
    (policy,) = report["policies"]
    assert policy["flips"] == 6
    assert all(e["text"].startswith("item ") for e in policy["examples"])


def test_texts_written_by_pyarrow_straight_to_the_store_are_read(tmp_path, s3_server, policies):
    bucket = s3_server.bucket()
    pq.write_table(pa.table({"id": ["x"], "text": ["hello"]}), f"{bucket}/in/x.parquet",
                   filesystem=s3_server.fs)  # fmt: skip
    run([f"s3://{bucket}/in"], policies[:1], tmp_path / "out", ScriptedEngine())
    assert [r["source_file"] for r in rows_of(tmp_path / "out")] == ["x.parquet"]
