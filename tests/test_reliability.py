"""Issue 24: the bookkeeping around the table, tried as an unlucky operator and an attacker
would. One test per numbered point (15: one per case); each failed on the code before."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from conftest import POLICIES, ROOT, write_parquet, write_shards
from helpers import answering, make_config, read_output, run, well_formed
from helpers import scripted_process as scripted

from batch.cli import cli
from batch.engine.scripted import ScriptedEngine, harmony_completion

BOTH = [str(POLICIES / "spam.md"), str(POLICIES / "harassment.md")]


def cli_run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def keys(output):
    table = read_output(output)
    return Counter(zip(table["source_file"].to_pylist(), table["source_row"].to_pylist(),
                       table["policy_id"].to_pylist(), strict=True))  # fmt: skip


def verify_cli(inputs, output, *extra):
    args = ["verify", "--input", inputs, "--output", output, *extra]
    for policy in BOTH:
        args += ["--policy", policy]
    return cli_run(*args)


def texts(folder: Path, name: str, rows: list[str]) -> Path:
    return write_parquet(folder / name, {"id": [f"i{i}" for i in range(len(rows))], "text": rows})


# 1. A shrink seen by a run killed after its first commit, or by --retry-failed
@pytest.mark.parametrize("first", ["killed after 1 commit", "--retry-failed"])
def test_1_a_file_that_shrank_keeps_no_label_of_its_vanished_rows(tmp_path, first):
    inputs, output = tmp_path / "in", tmp_path / "out"
    texts(inputs, "s.parquet", [f"message {i}" for i in range(10)])
    assert scripted(inputs, output).returncode == 0
    texts(inputs, "s.parquet", [f"message {i}" for i in range(6)])  # the last 4 rows gone
    extra = ["--die-after-commits", "1"] if first.startswith("killed") else ["--retry-failed"]
    scripted(inputs, output, *extra)
    assert scripted(inputs, output).returncode == 0
    assert scripted(inputs, output, "--force").returncode == 0
    found = keys(output)
    assert len(found) == 6 * 2 and max(found.values()) == 1  # before: 10 x 2
    done = verify_cli(inputs, output)
    assert done.exit_code == 0, done.output


def test_6_verify_fails_on_rows_that_no_longer_exist(tmp_path):
    inputs, output = tmp_path / "in", tmp_path / "out"
    texts(inputs, "s.parquet", [f"m{i}" for i in range(10)])
    assert scripted(inputs, output).returncode == 0
    texts(inputs, "s.parquet", [f"m{i}" for i in range(6)])  # shrunk, not relabelled yet
    done = verify_cli(inputs, output)
    assert done.exit_code == 5  # before: "4 stale ... complete", exit 0
    assert "4 of rows that no longer exist" in done.output


# 2. A table that went backwards
def test_2_a_table_that_went_back_is_labelled_again(tmp_path):
    inputs, output = write_shards(tmp_path / "in", [4, 4]), tmp_path / "out"
    assert scripted(inputs, output).returncode == 0
    newest = sorted((output / "_delta_log").glob("*.json"))[-1]
    newest.unlink()  # the newest commit is gone (or: the table restored from an older backup)
    assert verify_cli(inputs, output).exit_code == 5
    done = scripted(inputs, output)
    assert done.returncode == 0
    counts = json.loads(done.stdout.splitlines()[-1].split(" ", 1)[1])
    assert counts["requests"] > 0  # before: 0 requests, "already in the output"
    assert verify_cli(inputs, output).exit_code == 0


# 3. An external DELETE while a run goes on, and another run starts and ends meanwhile
def test_3_a_delete_during_a_run_is_not_forgotten_when_another_run_comes_and_goes(
    tmp_path, policies
):
    from deltalake import DeltaTable

    inputs, other, output = tmp_path / "a", tmp_path / "b", tmp_path / "out"
    texts(inputs, "a.parquet", [f"a message {i}" for i in range(8)])
    texts(other, "b.parquet", [f"b message {i}" for i in range(4)])
    done = []

    class Meddling(ScriptedEngine):
        def generate(self, requests, sampling):
            written = (output / "_delta_log").is_dir() and "a.parquet" in {
                k[0] for k in keys(output)
            }
            if written and not done:  # run A has written rows of a.parquet by now
                done.append(DeltaTable(str(output)).delete("source_file = 'a.parquet'"))
                run([other], policies, output, answering())  # run B: starts, ends
            return super().generate(requests, sampling)

    run([inputs], policies, output, Meddling(well_formed, per_step=1), chunk_size=4,
        batch_size=4)  # fmt: skip
    assert len(keys(output)) < (8 + 4) * 2  # the DELETE took rows A had written
    result = run([inputs], policies, output, answering(), chunk_size=4, batch_size=4)
    # before: a.parquet "complete", nothing read, the deleted rows missing for good; now read
    # again, the deleted rows labelled again (here: carried over from the version before the
    # DELETE, time travel)
    assert len(keys(output)) == (8 + 4) * 2
    counts = result.manifest["counts"]
    assert counts["requests"] + counts["reused"] >= 1


# 4. compact --vacuum keeps what it is asked to keep, and says what it did
def test_4_vacuum_rounds_up_refuses_nonsense_and_old_versions_say_they_were_vacuumed(
    tmp_path, small_shards, policies
):
    from batch.job.maintenance import compact
    from batch.output.table import LabelTable

    output = tmp_path / "out"
    run([small_shards], policies, output, answering())
    old = LabelTable(output).version()
    run([small_shards], policies, output, answering(lambda r: "1"), force=True)
    report = compact(str(output), vacuum_hours=0.5)
    assert LabelTable(output).scan(old).collect().height == 10  # before: int(0.5) = 0 hours
    assert report["vacuum_kept_hours"] == 1
    refused = cli_run("compact", output, "--vacuum", "1e30")
    assert refused.exit_code == 2 and "0<=x<=878400" in refused.output  # before: OverflowError
    compact(str(output), vacuum_hours=0)
    done = cli_run("diff", output, output, "--old-version", old)
    assert done.exit_code == 2
    assert "vacuum removed" in done.output and "restore it from a backup" not in done.output


# 5. A restarted pod takes its own files back
def test_5_a_restarted_static_worker_takes_its_previous_lifes_claims(tmp_path, policies):
    from batch.flow.sources import resolve_sources
    from batch.output.claims import Claims
    from batch.runners.files import claim_key
    from batch.runners.sharding import files_for_worker

    inputs, output = write_shards(tmp_path / "in", [3, 3, 3, 3]), tmp_path / "out"
    config = make_config([inputs], policies, output, worker={"index": 0, "count": 2})
    mine = set(files_for_worker([s for _, s in resolve_sources([str(inputs)])], 2, 0))
    config.inputs = [f for f in config.inputs if f.source_file in mine]
    claims = Claims(output, "this life")
    for source in config.inputs:  # as the same worker wrote them before its restart
        path = claims._path(claim_key(source, config))
        path.parent.mkdir(parents=True, exist_ok=True)
        life = {"run_id": "previous-life", "pid": 1, "namespace": "pid:[4026531836-old]"}
        path.write_text(json.dumps({**claims.me, **life, "worker": [0, 2]}))
    engine = answering()
    started = time.monotonic()
    from batch.runners.local import run_label_job

    result = run_label_job(config, engine)
    assert engine.requests_seen == len(mine) * 3 * 2  # before: 0, exit 0, left to "others"
    assert result.manifest["counts"]["left_to_other_runs"] == 0
    assert time.monotonic() - started < 30  # no lease wait


def test_5_a_claim_dated_in_the_future_does_not_block_forever(tmp_path, small_shards, policies):
    from batch.output.claims import Claims
    from batch.runners.files import claim_key

    config = make_config([small_shards], policies, tmp_path / "out")
    other = Claims(tmp_path / "out", "clock-skewed")
    other.me.update(host="elsewhere")
    for source in config.inputs:
        other.claim(claim_key(source, config))
    for path in (tmp_path / "out" / "_claims").glob("*.claim"):
        future = time.time() + 10 * 86400
        os.utime(path, (future, future))
    engine = answering()
    from batch.runners.local import run_label_job

    run_label_job(config, engine)
    assert engine.requests_seen == 10  # before: blocked for good (left to "clock-skewed")


# 6. verify --rehash
def test_6_verify_rehash_finds_an_edit_that_kept_size_and_time(tmp_path):
    inputs, output = tmp_path / "in", tmp_path / "out"
    path = texts(inputs, "s.parquet", ["aaaa", "bbbb", "cccc"])
    assert scripted(inputs, output).returncode == 0
    stat = path.stat()
    texts(inputs, "s.parquet", ["aaaa", "bbbX", "cccc"])
    assert path.stat().st_size == stat.st_size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert verify_cli(inputs, output).exit_code == 0  # size and time say unchanged
    rehashed = verify_cli(inputs, output, "--rehash")
    assert rehashed.exit_code == 5 and "1 stale" in rehashed.output  # no --rehash before


# 7. Review: the text the model judged, the label it gave
def test_7_review_export_leaves_out_rows_whose_text_changed(tmp_path, policies):
    inputs, output = tmp_path / "in", tmp_path / "out"
    texts(inputs, "s.parquet", ["first text", "second text"])
    run([inputs], policies[:1], output, answering())
    texts(inputs, "s.parquet", ["first text", "other words"])  # row 1 changed, not relabelled
    exported = tmp_path / "review.csv"
    done = cli_run(
        "review", "export", "--labels", output, "--select", "sample", "--output", exported
    )
    assert done.exit_code == 0, done.output
    rows = exported.read_text()
    assert "first text" in rows and "other words" not in rows  # before: shown beside its label
    assert "1 rows left out" in done.output


def test_7_review_import_checks_the_label_a_decision_is_about(tmp_path, policies):
    output = tmp_path / "out"
    inputs = tmp_path / "in"
    texts(inputs, "s.parquet", ["hello there"])
    run([inputs], policies[:1], output, answering())
    review = tmp_path / "r.csv"
    for row, expected in (
        ("i0,harassment,1,1", "has no labels"),  # a policy this id was not labelled under
        ("i0,spam,7,1", "version 7"),  # reviewed under another version of the policy
    ):
        review.write_text(f"id,policy_id,policy_version,decision\n{row}\n")
        done = cli_run("review", "import", review, "--labels", output, "--output",
                       tmp_path / "gold.parquet")  # fmt: skip
        assert done.exit_code == 2 and expected in done.output, done.output


# 8. migrate stopped halfway
def test_8_a_migrate_stopped_after_moving_some_partitions_is_finished_by_a_rerun(
    tmp_path, small_shards, policies
):
    run([small_shards], policies, tmp_path / "new", answering())
    rows = read_output(tmp_path / "new").to_pylist()
    old = tmp_path / "old"
    for policy_id in ("spam", "harassment"):
        mine = [{k: v for k, v in r.items() if k not in ("source_path", "route")}
                | {"source_file": str(small_shards / r["source_file"])}
                for r in rows if r["policy_id"] == policy_id]  # fmt: skip
        folder = old / f"policy_id={policy_id}"
        folder.mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(mine), folder / "part-x-000000-y.parquet")
    (old / "_legacy").mkdir()
    os.rename(old / "policy_id=spam", old / "_legacy" / "policy_id=spam")  # moved, then killed
    done = cli_run("migrate", old, "--source-root", small_shards)
    assert done.exit_code == 0, done.output
    assert len(read_output(old)) == 10  # before: 5, the spam partition left out


# 9. Claims of another shape
SHAPES = ["[1, 2]", '"x"', '{"run_id": "r", "pid": "abc"}',
          '{"run_id": "r", "pid": 123456789012345678901}']  # fmt: skip


@pytest.mark.parametrize("content", SHAPES)
def test_9_a_claim_file_of_another_shape_neither_crashes_nor_blocks(
    tmp_path, small_shards, policies, content
):
    from batch.output.claims import Claims
    from batch.runners.files import claim_key

    config = make_config([small_shards], policies, tmp_path / "out")
    claims = Claims(tmp_path / "out", "writer")
    for source in config.inputs:
        path = claims._path(claim_key(source, config))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        old = time.time() - 60  # not a claim being written this instant
        os.utime(path, (old, old))
    engine = answering()
    from batch.runners.local import run_label_job

    started = time.monotonic()
    run_label_job(config, engine)  # before: AttributeError / ValueError / OverflowError
    assert engine.requests_seen == 10
    # Not a claim a run could have written (a pid no process has): no wait for its lease,
    # which would run out 60 s from now (before: the last shape waited those 60 s).
    assert time.monotonic() - started < 30


# 10. Label Studio exports of another shape
ANNOTATIONS = ['"oops"', "[1]", '[{"result": ["x"]}]',
               '[{"result": [{"from_name": "decision", "value": [1]}]}]']  # fmt: skip


@pytest.mark.parametrize("annotations", ANNOTATIONS)
def test_10_a_label_studio_export_of_another_shape_is_an_error_naming_the_task(
    tmp_path, policies, annotations
):
    inputs, output = tmp_path / "in", tmp_path / "out"
    texts(inputs, "s.parquet", ["hello"])
    run([inputs], policies[:1], output, answering())
    export = tmp_path / "export.json"
    export.write_text(f'[{{"data": {{"id": "i0", "policy_id": "spam"}}, '
                      f'"annotations": {annotations}}}]')  # fmt: skip
    done = cli_run("review", "import", export, "--labels", output, "--output",
                   tmp_path / "gold.parquet")  # fmt: skip
    assert done.exit_code == 2 and "task 1" in done.output  # before: AttributeError


# 11. report on damaged diffs and manifests
@pytest.mark.parametrize("damage", ["flip_rate", "matrix", "generate_seconds"])
def test_11_a_damaged_diff_or_manifest_is_listed_not_fatal(tmp_path, small_shards, policies,
                                                           damage):  # fmt: skip
    output = tmp_path / "out"
    run([small_shards], policies, output, answering())
    if damage == "generate_seconds":
        manifest = next((output / "_runs").glob("*.json"))
        data = json.loads(manifest.read_text())
        data["timing"]["generate_seconds"] = "5"
        data["engine"] = {"engine": "vllm", "config": {"tensor_parallel_size": 2}}
        manifest.write_text(json.dumps(data))
    else:
        policy = {"policy_id": "spam", "flips": 1, "shared": 2, "flip_rate": 0.5,
                  "matrix": {"0": {"1": 1}}, "examples": []}  # fmt: skip
        policy.update({"flip_rate": "lots"} if damage == "flip_rate" else {"matrix": {"0": [1]}})
        (output / "_diffs").mkdir()
        (output / "_diffs" / "r1.json").write_text(json.dumps({"policies": [policy]}))
    done = cli_run("report", output, "--html", tmp_path / "report.html")
    assert done.exit_code == 0, done.output  # before: ValueError / AttributeError / TypeError
    page = (tmp_path / "report.html").read_text()
    assert "<html" in page
    if damage != "generate_seconds":
        assert "Files that could not be read" in page and "r1.json" in page


# 12. An engine that breaks the streaming contract
class Broken(ScriptedEngine):
    def __init__(self, how: str) -> None:
        super().__init__(well_formed)
        self.how = how

    def stream(self, requests, sampling, max_in_flight):
        for number, (key, request) in enumerate(requests):
            if number == 3:
                if self.how == "drops":
                    continue
                if self.how == "unknown key":
                    yield "no such key", harmony_completion("0")
                if self.how == "twice":
                    yield key, harmony_completion("0")
                if self.how == "raises":
                    raise RuntimeError("the engine fell over")
            yield key, harmony_completion(well_formed(request))


def test_12_a_dropped_request_gets_engine_error_rows_and_the_rest_is_written(
    tmp_path, small_shards, policies
):
    result = run([small_shards], policies, tmp_path / "out", Broken("drops"), batch_size=100)
    assert result.manifest["counts"]["status"]["engine_error"] == 1  # before: RuntimeError
    assert len(keys(tmp_path / "out")) == 10


@pytest.mark.parametrize("how", ["unknown key", "twice", "raises"])
def test_12_an_engine_that_breaks_the_contract_is_a_clear_error_after_what_is_written(
    tmp_path, small_shards, policies, how
):
    from batch.errors import SafeguardError

    with pytest.raises(SafeguardError, match="what was answered"):  # before: KeyError...
        run([small_shards], policies, tmp_path / "out", Broken(how), batch_size=100)
    assert len(keys(tmp_path / "out")) >= 1  # the first answers were committed


# 13. A damaged index; a TOML datetime in a job spec
@pytest.mark.parametrize("damage", ["not a database", "truncated"])
def test_13_a_damaged_index_is_rebuilt_not_a_dead_end(tmp_path, damage):
    inputs, output = write_shards(tmp_path / "in", [4, 4]), tmp_path / "out"
    assert scripted(inputs, output).returncode == 0
    index = output / "_index" / "index.sqlite"
    if damage == "not a database":
        index.write_bytes(b"this is not a database" * 100)
    else:
        index.write_bytes(index.read_bytes()[:1000])
    done = scripted(inputs, output)
    assert done.returncode == 0, done.stderr[-2000:]  # before: exit 6 on every run
    counts = json.loads(done.stdout.splitlines()[-1].split(" ", 1)[1])
    assert counts["requests_sent"] < 16  # the table said what is done (parse errors retried)
    assert list((output / "_index").glob("index.sqlite.damaged-*"))
    assert verify_cli(inputs, output).exit_code == 0


def test_13_a_toml_datetime_engine_arg_is_a_clear_error_even_on_a_dry_run(tmp_path):
    spec = tmp_path / "job.toml"
    spec.write_text('command = "label"\ninputs = ["x/"]\npolicies = ["p.md"]\noutput = "o"\n'
                    'model = "m"\n[engine_args]\nwhen = 2026-11-30T00:00:00Z\n')  # fmt: skip
    done = cli_run("run", spec, "--dry-run")
    assert done.exit_code == 2 and "engine_args.when" in done.output  # before: TypeError


# 14. Injection into review files
def test_14_csv_cells_a_spreadsheet_would_evaluate_are_neutralised_and_read_back(
    tmp_path, policies
):
    inputs, output = tmp_path / "in", tmp_path / "out"
    evil = ['=HYPERLINK("http://x")', "-2", "ok"]
    write_parquet(inputs / "s.parquet", {"id": ["=1+1", "@SUM(A1)", "plain"], "text": evil})
    run([inputs], policies[:1], output, answering())
    exported = tmp_path / "review.csv"
    assert cli_run("review", "export", "--labels", output, "--select", "sample",
                   "--output", exported).exit_code == 0  # fmt: skip
    import csv

    cells = [c for row in csv.reader(exported.open()) for c in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@")]  # before: written verbatim
    rows = list(csv.DictReader(exported.open()))
    for row in rows:
        row["decision"] = "1"
    with exported.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=rows[0].keys())
        writer.writeheader()
        writer.writerows(rows)
    done = cli_run("review", "import", exported, "--labels", output, "--output",
                   tmp_path / "gold.parquet")  # fmt: skip
    assert done.exit_code == 0, done.output
    gold = pq.read_table(tmp_path / "gold.parquet").column("id").to_pylist()
    assert sorted(gold) == sorted(["=1+1", "@SUM(A1)", "plain"])  # the ids, exactly


def test_14_tests_toml_holds_any_text(tmp_path, policies):
    import tomllib

    inputs, output = tmp_path / "in", tmp_path / "out"
    evil = ["del \x7f char", 'quote " and \\ back', "nul \x01 and \x1f", "new\nline"]
    texts(inputs, "s.parquet", evil)
    run([inputs], policies[:1], output, answering())
    review = tmp_path / "review.parquet"
    assert cli_run("review", "export", "--labels", output, "--select", "sample",
                   "--output", review).exit_code == 0  # fmt: skip
    pq.write_table(pq.read_table(review).drop(["decision"]).append_column(
        "decision", pa.array(["1"] * len(evil))), review)  # fmt: skip
    done = cli_run("review", "import", review, "--labels", output, "--output",
                   tmp_path / "gold.parquet", "--tests", tmp_path / "tests")  # fmt: skip
    assert done.exit_code == 0, done.output
    (written,) = (tmp_path / "tests").glob("*.toml")
    cases = tomllib.loads(written.read_text())["tests"]  # before: invalid TOML (raw U+007F)
    assert sorted(case["text"] for case in cases) == sorted(evil)


# 15. Names, a vacuum beside a run, two day folders
def test_15_file_names_with_quotes_backslashes_newlines_and_bytes_that_are_not_utf8(
    tmp_path, policies
):
    inputs, output = tmp_path / "in", tmp_path / "out"
    names = ["it's.parquet", "back\\slash.parquet", "new\nline.parquet",
             os.fsdecode(b"caf\xe9-latin1.parquet")]  # fmt: skip
    for number, name in enumerate(names):
        texts(inputs, name, [f"file {number} row {i}" for i in range(3)])
    run([inputs], policies, output, answering())
    assert len(keys(output)) == 4 * 3 * 2
    assert "caf\\xe9-latin1.parquet" in {k[0] for k in keys(output)}
    engine = answering()
    run([inputs], policies, output, engine)
    assert engine.requests_seen == 0
    texts(inputs, "it's.parquet", ["only one row now"])  # a shrink: a DELETE with a quote
    run([inputs], policies, output, answering())
    assert len(keys(output)) == (3 * 3 + 1) * 2 and max(keys(output).values()) == 1


def test_15_reads_during_a_vacuum_0_compaction_are_retried(tmp_path, small_shards, policies):
    """A compaction with vacuum 0 between a run's opening the table and its reading it."""
    from batch.job.maintenance import compact
    from batch.output.table import LabelTable

    output = tmp_path / "out"
    run([small_shards], policies, output, answering(), chunk_size=1, batch_size=2)
    table = LabelTable(output)
    opened = table.open

    def compacting_open(version=None):
        delta = opened(version)
        if version is None and not getattr(table, "_compacted", False):
            table._compacted = True
            compact(str(output), vacuum_hours=0)  # the files just opened are gone
        return delta

    table.open = compacting_open
    rows = table.current(["a.parquet"], ["spam"], ["source_row"])
    assert rows.num_rows == 3  # before: "a data file cannot be read ... restore it"


def test_15_two_day_folders_without_source_root_are_warned_about(tmp_path, policies, caplog):
    day1, day2 = tmp_path / "d1", tmp_path / "d2"
    texts(day1, "part-0.parquet", ["monday"])
    texts(day2, "part-0.parquet", ["tuesday"])
    run([day1], policies[:1], tmp_path / "out", answering())
    with caplog.at_level("WARNING"):
        run([day2], policies[:1], tmp_path / "out", answering())
    assert "give --source-root" in caplog.text  # before: silently the same file


def test_randomized_faults_leave_exactly_the_right_rows(tmp_path):
    """scripts/fault_trials.py in a small budget (the closing note gives 200 trials)."""
    report = tmp_path / "trials.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "fault_trials.py"), "--trials", "3", "--seed",
         "11", "--json", str(report)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    summary = json.loads(report.read_text())
    assert summary["trials"] == 3 and summary["failed"] == 0
    assert sum(summary["steps"].values()) >= 9
