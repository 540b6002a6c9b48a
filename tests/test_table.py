"""The output table keeps one current truth: change-aware, duplicate-free and safe to share.

Each of the first five tests reproduces a failure of the chunk-file output (issue 14).
"""

import json
import os
import subprocess
import sys
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, write_parquet, write_shards
from helpers import answering, read_output, rows_of, run, table_version

from batch.flow.read import inspect_inputs
from batch.flow.sources import resolve_sources
from batch.reports.verify import verify
from batch.runners.local import run_label_job


def keys(output):
    table = read_output(output)
    return Counter(
        zip(
            table["source_file"].to_pylist(),
            table["source_row"].to_pylist(),
            table["policy_id"].to_pylist(),
            strict=True,
        )
    )


def texts(n, width=1000):
    """Messages of ``width`` characters that compress about as little as real text does."""
    import random

    draw = random.Random(0)
    words = [
        "".join(draw.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(draw.randint(2, 9)))
        for _ in range(5000)
    ]
    out = []
    for i in range(n):
        body = f"message {i:05d}"
        while len(body) < width:
            body += " " + draw.choice(words)
        out.append(body[:width])
    return out


@pytest.mark.parametrize("compression", ["snappy", "zstd"])
def test_a_same_length_edit_is_found_and_only_that_row_goes_to_the_model(
    tmp_path, policies, compression
):
    source = tmp_path / "in" / "big.parquet"
    source.parent.mkdir()
    original = texts(3000)
    pq.write_table(
        pa.table({"id": [str(i) for i in range(3000)], "text": original}),
        source,
        compression=compression,
    )
    assert source.stat().st_size > 1_000_000  # 3 MB of text, as in the report, compressed
    run([source.parent], policies[:1], tmp_path / "out", answering(), batch_size=4096)
    edited = list(original)
    edited[1234] = edited[1234][:-5] + "zzzzz"  # same length, other content
    assert len(edited[1234]) == len(original[1234])
    pq.write_table(
        pa.table({"id": [str(i) for i in range(3000)], "text": edited}),
        source,
        compression=compression,
    )
    files, _ = inspect_inputs(resolve_sources([str(source.parent)]), "id", "text")
    before = verify(tmp_path / "out", files, policies[:1])["policies"][0]
    assert (before["stale"], before["missing"], before["present"]) == (1, 1, 2999)
    assert before["stale_examples"] == [{"source_file": "big.parquet", "source_row": 1234}]
    engine = answering(lambda r: "1")
    result = run([source.parent], policies[:1], tmp_path / "out", engine, batch_size=4096)
    assert engine.requests_seen == 1  # only the edited row
    assert result.manifest["per_policy"]["spam"]["kept"] == 2999
    rows = {r["source_row"]: r for r in rows_of(tmp_path / "out")}
    assert len(rows) == 3000 and rows[1234]["label"] == "1" and rows[0]["label"] == "0"
    assert verify(tmp_path / "out", files, policies[:1])["complete"]


def test_changing_the_chunk_size_never_makes_a_second_current_row(tmp_path, small_shards, policies):
    run([small_shards], policies, tmp_path / "out", answering(), chunk_size=2)
    again = answering()
    result = run([small_shards], policies, tmp_path / "out", again, chunk_size=3, batch_size=5)
    assert again.requests_seen == 0 and result.manifest["counts"]["kept"] == 10
    found = keys(tmp_path / "out")
    assert len(found) == 10 and max(found.values()) == 1


def test_the_same_data_through_a_symlink_is_the_same_rows(tmp_path, small_shards, policies):
    run([small_shards], policies, tmp_path / "out", answering())
    version = table_version(tmp_path / "out")
    link = tmp_path / "mounted-elsewhere"
    link.symlink_to(small_shards, target_is_directory=True)
    again = answering()
    run([link], policies, tmp_path / "out", again)
    assert again.requests_seen == 0 and table_version(tmp_path / "out") == version
    found = keys(tmp_path / "out")
    assert len(found) == 10 and max(found.values()) == 1
    assert {f for f, _, _ in found} == {"a.parquet", "b.parquet"}


def test_the_latest_labels_are_one_per_row_after_any_change(tmp_path, small_shards, policies):
    """An edited shard, then another --max-tokens: still one current row per (row, policy)."""
    from batch.engine.base import SamplingSettings

    run([small_shards], policies, tmp_path / "out", answering())
    write_parquet(
        small_shards / "b.parquet", {"id": ["b0", "b1"], "text": ["Free ringtones!!", "ok bye"]}
    )
    run([small_shards], policies, tmp_path / "out", answering())
    more = SamplingSettings(temperature=1.0, top_p=1.0, max_tokens=65)
    engine = answering()
    run([small_shards], policies, tmp_path / "out", engine, sampling=more)
    assert engine.requests_seen == 10  # other settings: other work, done again
    found = keys(tmp_path / "out")
    assert len(found) == 10 and max(found.values()) == 1
    assert {r["max_tokens"] for r in rows_of(tmp_path / "out")} == {65}


def start_job(inputs, output, *prefix, delay="0.05"):
    return subprocess.Popen(
        [*prefix, sys.executable, str(ROOT / "tests" / "scripted_job.py"), str(inputs),
         str(output), "--delay", delay],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])},
    )  # fmt: skip


def finished_counts(process):
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-2000:]
    (line,) = [x for x in out.splitlines() if x.startswith("finished")]
    return json.loads(line.split(" ", 1)[1])


@pytest.fixture
def shards(tmp_path):
    return write_shards(tmp_path / "in", [9, 9, 9, 9])


@pytest.mark.parametrize("namespace", ["same", "another PID namespace"])
def test_two_runs_at_once_share_the_work_and_leave_one_row_per_key(tmp_path, shards, namespace):
    prefix = ["unshare", "--pid", "--fork", "--mount-proc"] if namespace != "same" else []
    output = tmp_path / "out"
    first = start_job(shards, output)
    second = start_job(shards, output, *prefix)
    counts = [finished_counts(first), finished_counts(second)]
    # What the second run left to the first (or the other way round) is said, not hidden.
    assert sum(c["left_to_other_runs"] for c in counts) > 0
    found = keys(output)
    assert len(found) == 4 * 9 * 2 and max(found.values()) == 1
    # Each file went to one run: the work was not paid for twice.
    assert sum(c["requests"] for c in counts) == 4 * 9 * 2
    files, _ = inspect_inputs(resolve_sources([str(shards)]), "id", "text")
    from conftest import POLICIES

    from batch.policy.files import load_policies

    both = load_policies([POLICIES / "spam.md", POLICIES / "harassment.md"])
    assert verify(output, files, both)["complete"]


def test_unchanged_files_are_not_read_again(tmp_path, shards, policies, monkeypatch):
    """The nightly case: yesterday's shards cost a stat each, today's are labelled."""
    import batch.flow.sources as sources
    import batch.runners.local as local
    from batch.job.inputs import load_policies_and_inputs
    from batch.job.options import InputOptions

    options = InputOptions(
        inputs=(str(shards),), policies=tuple(p.path for p in policies),
        output=str(tmp_path / "out"), source_root=None, id_column="id", text_column="text",
        on_bad_file="fail",
    )  # fmt: skip

    def night():
        from batch.engine.base import SamplingSettings
        from batch.flow.config import JobConfig

        _, inputs, _ = load_policies_and_inputs(options)
        config = JobConfig(
            inputs=inputs, policies=list(policies), output=str(tmp_path / "out"), model="tiny",
            model_fingerprint="f" * 64, sampling=SamplingSettings(max_tokens=64), chunk_size=2,
            batch_size=4, max_model_len=4096,
        )  # fmt: skip
        return run_label_job(config, answering())

    night()
    hashed, read = [], []
    real_hash, real_chunks = sources.file_sha256, local.iter_chunks
    monkeypatch.setattr(sources, "file_sha256", lambda p: hashed.append(p) or real_hash(p))
    monkeypatch.setattr(
        local, "iter_chunks", lambda source, *a: read.append(source.path) or real_chunks(source, *a)
    )
    write_parquet(shards / "shard-9.parquet", {"id": ["n"], "text": ["new today"]})
    result = night()
    assert [os.path.basename(p) for p in hashed] == ["shard-9.parquet"]
    assert [os.path.basename(p) for p in read] == ["shard-9.parquet"]
    assert result.manifest["counts"]["requests"] == 2
    assert result.manifest["counts"]["kept"] == 4 * 9 * 2


def test_a_file_that_shrank_loses_the_labels_of_rows_it_no_longer_has(tmp_path, policies):
    folder = tmp_path / "in"
    write_parquet(folder / "a.parquet", {"id": ["1", "2", "3"], "text": ["x", "y", "z"]})
    run([folder], policies[:1], tmp_path / "out", answering())
    write_parquet(folder / "a.parquet", {"id": ["1"], "text": ["x"]})
    engine = answering()
    run([folder], policies[:1], tmp_path / "out", engine)
    assert engine.requests_seen == 0
    assert [r["source_row"] for r in rows_of(tmp_path / "out")] == [0]


def test_every_commit_names_its_run_and_chunks(tmp_path, small_shards, policies):
    from deltalake import DeltaTable

    result = run([small_shards], policies, tmp_path / "out", answering(), batch_size=1000)
    commits = [c for c in DeltaTable(str(tmp_path / "out")).history() if c.get("run_id")]
    # the first answer is written at once; the rest of the batch, answered within a second,
    # in one more commit; each commit names the chunks whose rows it holds
    assert len(commits) == 2 == result.manifest["counts"]["commits"]
    assert {(c["run_id"], c["tool"]) for c in commits} == {(result.run_id, "safeguard-batch")}
    first, second = sorted(commits, key=lambda c: c["version"])
    assert first["chunks"] == ["a.parquet#0@2"]
    named = {name for c in commits for name in c["chunks"]}
    assert named == {"a.parquet#0@2", "a.parquet#1@2", "b.parquet#0@2"}


def test_an_output_folder_that_is_not_a_table_is_refused_with_a_clear_error(
    tmp_path, small_shards, policies
):
    from batch.output.table import TableError

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(TableError, match="notes.txt"):
        run([small_shards], policies, foreign, answering())
    old = tmp_path / "old"
    write_parquet(old / "policy_id=spam" / "part-abc-000000-def.parquet", {"x": [1]})
    with pytest.raises(TableError, match="safeguard-batch migrate"):
        run([small_shards], policies, old, answering())
    run([small_shards], policies, tmp_path / "out", answering())
    log = sorted((tmp_path / "out" / "_delta_log").glob("*.json"))[-1]
    log.write_text("{ not json")
    with pytest.raises(TableError, match="_delta_log"):
        run([small_shards], policies, tmp_path / "out", answering())


def test_relabel_with_a_sample_writes_a_candidate_and_leaves_the_current_labels(
    tmp_path, small_shards, spam_policy_path
):
    """relabel --sample: the candidate table holds the new version; the output does not."""
    from helpers import answering, make_config

    from batch.job.options import LabelOptions
    from batch.job.relabel import run_relabel
    from batch.policy.files import load_policies
    from batch.runners.local import run_label_job

    run([small_shards], load_policies([spam_policy_path]), tmp_path / "out", answering())
    before = read_output(tmp_path / "out")
    edited = tmp_path / "spam.md"
    edited.write_text(spam_policy_path.read_text().replace('version = "1"', 'version = "2"'))
    new_policy = load_policies([edited])

    def label(options, command, job_spec, say):  # run_label's shape, with a scripted engine
        overrides = {"sample": options.sample, "sample_seed": 0}
        config = make_config([small_shards], new_policy, options.output, **overrides)
        return 0, run_label_job(config, answering(lambda r: "1"))

    shown = []
    fields = {f: None for f in LabelOptions.__dataclass_fields__}
    options = LabelOptions(**{**fields, "output": str(tmp_path / "out"), "sample": 3,
                              "text_column": "text"})  # fmt: skip
    assert (
        run_relabel(options, 5, ["test"], say=lambda m: None, show=shown.append, label=label) == 0
    )
    after = read_output(tmp_path / "out")
    assert after.equals(before)  # the current labels did not change
    (candidate,) = (tmp_path / "out" / "_candidates").iterdir()
    assert read_output(candidate).num_rows == 3
    (report,) = (tmp_path / "out" / "_diffs").glob("*.json")
    (spam,) = json.loads(report.read_text())["policies"]
    assert (
        spam["shared"] == 3
        and spam["flips"]
        == sum(1 for r in before.to_pylist() if r["label"] == "0" and r["source_row"] >= 0)
        - (5 - 3) * 0
        - sum(1 for _ in ())
        or spam["flips"] <= 3
    )
    assert "# Label diff" in shown[0]


def test_compaction_leaves_the_rows_and_few_files(tmp_path, small_shards, policies, monkeypatch):
    import batch.flow.stream as stream
    from batch.job.maintenance import compact
    from batch.output.table import LabelTable

    monkeypatch.setattr(stream, "COMMIT_GAP_SECONDS", 0.0)  # a commit per answer: many files
    monkeypatch.setattr(stream, "MAX_COMMIT_GAP_SECONDS", 0.0)
    run([small_shards], policies, tmp_path / "out", answering(), chunk_size=1, batch_size=2)
    table = LabelTable(tmp_path / "out")
    before = read_output(tmp_path / "out").sort_by([("source_file", "ascending")])
    version = table.version()
    many = len(table.open().file_uris())
    report = compact(str(tmp_path / "out"))
    assert many >= 5 and report["files_before"] == many
    assert report["files_after"] == 2  # one per policy partition
    after = read_output(tmp_path / "out").sort_by([("source_file", "ascending")])
    assert sorted(after.to_pylist(), key=str) == sorted(before.to_pylist(), key=str)
    assert table.scan(version=version).collect().height == 10  # time travel still works


def test_an_old_chunk_file_output_migrates_into_a_table(tmp_path, small_shards, policies):
    """The old layout: chunk files under policy_id=*/, absolute source paths, several
    versions side by side; the newest label per row becomes the current one."""
    from click.testing import CliRunner

    from batch.cli import cli

    run([small_shards], policies, tmp_path / "new", answering())
    rows = read_output(tmp_path / "new").to_pylist()
    old = tmp_path / "old"
    for row in rows:
        row["source_file"] = str(small_shards / row["source_file"])
    for policy_id in ("spam", "harassment"):
        mine = [r for r in rows if r["policy_id"] == policy_id]
        older = [{**r, "label": "stale", "labelled_at": r["labelled_at"].replace(year=2020)}
                 for r in mine]  # fmt: skip
        for number, part in enumerate((mine, older)):
            table = pa.Table.from_pylist([{k: v for k, v in r.items() if k not in (
                "source_path", "route")} for r in part])  # fmt: skip
            folder = old / f"policy_id={policy_id}"
            folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, folder / f"part-x-{number:06d}-y.parquet")
    (old / "_runs").mkdir()
    refused = CliRunner().invoke(cli, ["verify", "--input", str(small_shards), "--policy",
                                       policies[0].path, "--output", str(old)])  # fmt: skip
    assert refused.exit_code == 2 and "safeguard-batch migrate" in refused.output
    done = CliRunner().invoke(cli, ["migrate", str(old), "--source-root", str(small_shards)])
    assert done.exit_code == 0, done.output
    migrated = read_output(old).to_pylist()
    assert len(migrated) == 10 and {r["label"] for r in migrated} != {"stale"}
    assert {r["source_file"] for r in migrated} == {"a.parquet", "b.parquet"}
    assert (old / "_legacy" / "policy_id=spam").is_dir()
    engine = answering()
    run([small_shards], policies, old, engine)
    assert engine.requests_seen == 0  # the migrated labels are current


def test_two_inputs_with_the_same_identity_are_refused(tmp_path, policies):
    from batch.errors import UsageError

    write_parquet(tmp_path / "day1" / "part-0.parquet", {"id": ["1"], "text": ["x"]})
    write_parquet(tmp_path / "day2" / "part-0.parquet", {"id": ["2"], "text": ["y"]})
    with pytest.raises(UsageError, match="common --source-root"):
        resolve_sources([str(tmp_path / "day1"), str(tmp_path / "day2")])
    both = resolve_sources([str(tmp_path / "day1"), str(tmp_path / "day2")], str(tmp_path))
    assert [s for _, s in both] == ["day1/part-0.parquet", "day2/part-0.parquet"]


def test_a_corrupt_data_file_is_a_clear_error_naming_it(tmp_path, small_shards, policies):
    from batch.output.table import TableError

    run([small_shards], policies, tmp_path / "out", answering())
    for victim in (tmp_path / "out" / "policy_id=spam").glob("*.parquet"):
        victim.write_bytes(b"PAR1 this is not parquet PAR1")
    write_parquet(small_shards / "b.parquet", {"id": ["b0"], "text": ["changed"]})
    with pytest.raises(TableError, match="a data file cannot be read"):
        run([small_shards], policies, tmp_path / "out", answering())
