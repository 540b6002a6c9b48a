"""The label table on object storage (``--output s3://...``), against a real S3 API (moto's
server on loopback): the local tables' guarantees, with the store's conditional writes in
place of POSIX locks, and the index as a local cache that can be lost or left behind.

"Another machine" is another process with its own ``--cache-dir``: it shares only the store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter

import pytest
from click.testing import CliRunner
from conftest import POLICIES, ROOT
from helpers import (
    answering,
    make_config,
    read_output,
    rows_of,
    run,
    scripted_process,
    table_version,
)

from batch.cli import cli
from batch.engine.scripted import ScriptedEngine
from batch.errors import OutputError, UsageError
from batch.output import object_claims, place
from batch.output.object_claims import ObjectClaims
from batch.output.table import LabelTable, TableError
from batch.policy.files import load_policies
from batch.reports.verify import verify

SPAM = str(POLICIES / "spam.md")
BOTH = (POLICIES / "spam.md", POLICIES / "harassment.md")


def texts(s3, uri: str, rows: list[str]) -> str:
    return s3.put_parquet(uri, {"id": [f"i{i}" for i in range(len(rows))], "text": rows})


def keys(output) -> Counter:
    table = read_output(output)
    return Counter(zip(table["source_file"].to_pylist(), table["source_row"].to_pylist(),
                       table["policy_id"].to_pylist(), strict=True))  # fmt: skip


@pytest.fixture
def bucket(s3_server, tmp_path, monkeypatch):
    """A new bucket, and this machine's cache of tables under the test's folder."""
    monkeypatch.setenv(place.CACHE_ENV, str(tmp_path / "cache"))
    return f"s3://{s3_server.bucket()}"


def machine(tmp_path, name: str) -> dict[str, str]:
    """The environment of a process on another machine: its own cache folder."""
    return {**os.environ, place.CACHE_ENV: str(tmp_path / f"cache-{name}"),
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}  # fmt: skip


def start_job(inputs, output, env, *prefix, delay="0.05"):
    return subprocess.Popen(
        [*prefix, sys.executable, str(ROOT / "tests" / "scripted_job.py"), str(inputs),
         str(output), "--delay", delay],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def finished_counts(process) -> dict:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-2000:]
    (line,) = [x for x in out.splitlines() if x.startswith("finished")]
    return json.loads(line.split(" ", 1)[1])


def test_a_table_on_s3_holds_the_labels_and_its_files_lie_beside_it(bucket, s3_server, policies):
    texts(s3_server, f"{bucket}/in/a.parquet", ["win a prize", "see you", "ok"])
    out = f"{bucket}/labels/"  # a trailing slash names the same table
    result = run([f"{bucket}/in"], policies, out, answering())
    assert len(rows_of(out)) == 3 * 2
    assert str(result.manifest_path).startswith(f"{bucket}/labels/_runs/")
    assert result.manifest["output"] == f"{bucket}/labels"
    assert json.loads(place.read_bytes(result.manifest_path))["run_id"] == result.run_id
    again = answering()
    run([f"{bucket}/in"], policies, out, again)
    assert again.requests_seen == 0  # complete, known from the local cache
    # Nothing of the tool's is left on the store but the table, its runs and the marker its
    # creator won (_locks/create).
    from pyarrow import fs

    names = s3_server.fs.get_file_info(fs.FileSelector(out.split("://")[1].rstrip("/")))
    assert sorted(i.base_name for i in names) == [
        "_delta_log", "_locks", "_runs", "policy_id=harassment", "policy_id=spam"
    ]  # fmt: skip
    assert [i.base_name for i in s3_server.fs.get_file_info(
        fs.FileSelector(out.split("://")[1] + "_locks"))] == ["create"]  # fmt: skip


def test_a_lost_cache_costs_a_scan_of_the_table_not_model_work(
    bucket, s3_server, policies, tmp_path, monkeypatch
):
    texts(s3_server, f"{bucket}/in/a.parquet", [f"message {i}" for i in range(6)])
    run([f"{bucket}/in"], policies, f"{bucket}/labels", answering())
    before = sorted(r["labelled_at"] for r in rows_of(f"{bucket}/labels"))
    monkeypatch.setenv(place.CACHE_ENV, str(tmp_path / "a-new-cache"))
    again = answering()
    run([f"{bucket}/in"], policies, f"{bucket}/labels", again)
    assert again.requests_seen == 0  # the labels are found in the table, carried over
    assert sorted(r["labelled_at"] for r in rows_of(f"{bucket}/labels")) == before


def test_a_run_killed_mid_way_is_finished_by_a_rerun_with_every_row_once(bucket, s3_server):
    for shard in range(3):
        texts(s3_server, f"{bucket}/in/s{shard}.parquet", [f"m {shard} {i}" for i in range(8)])
    out = f"{bucket}/labels"
    killed = scripted_process(f"{bucket}/in", out, "--die-after-commits", "3")
    assert killed.returncode == 137, killed.stderr[-2000:]
    assert 0 < len(rows_of(out)) < 48
    # The killed run's claims are objects that stay until they go stale or their holder is
    # known dead (same host and PID namespace: it is), so the rerun takes them over at once.
    assert scripted_process(f"{bucket}/in", out).returncode == 0
    found = keys(out)
    assert len(found) == 3 * 8 * 2 and max(found.values()) == 1


@pytest.mark.parametrize("namespace", ["same", "another PID namespace"])
def test_two_machines_at_once_share_the_work_and_leave_one_row_per_key(
    bucket, s3_server, tmp_path, namespace
):
    for shard in range(4):
        texts(s3_server, f"{bucket}/in/s{shard}.parquet", [f"m {shard} {i}" for i in range(9)])
    out = f"{bucket}/labels"
    # Both make the table (one CREATE wins), then their MERGEs race for each version.
    prefix = ["unshare", "--pid", "--fork", "--mount-proc"] if namespace != "same" else []
    first = start_job(f"{bucket}/in", out, machine(tmp_path, "a"))
    second = start_job(f"{bucket}/in", out, machine(tmp_path, "b"), *prefix)
    counts = [finished_counts(first), finished_counts(second)]
    assert sum(c["left_to_other_runs"] for c in counts) > 0  # the claims on the store held
    assert sum(c["requests"] for c in counts) == 4 * 9 * 2  # each file paid for once
    found = keys(out)
    assert len(found) == 4 * 9 * 2 and max(found.values()) == 1
    config = make_config([f"{bucket}/in"], load_policies(BOTH), out)
    assert verify(out, config.inputs, load_policies(BOTH))["complete"]


def test_an_edit_of_the_same_size_is_relabelled(bucket, s3_server, policies):
    texts(s3_server, f"{bucket}/in/a.parquet", ["aaaa", "bbbb", "cccc"])
    run([f"{bucket}/in"], policies[:1], f"{bucket}/labels", ScriptedEngine())
    texts(s3_server, f"{bucket}/in/a.parquet", ["aaaa", "BBBB", "cccc"])
    edited = ScriptedEngine()
    run([f"{bucket}/in"], policies[:1], f"{bucket}/labels", edited)
    assert edited.requests_seen == 1
    found = keys(f"{bucket}/labels")
    assert len(found) == 3 and max(found.values()) == 1


@pytest.mark.parametrize("labeller", ["this machine", "another machine"])
def test_a_file_that_shrank_keeps_no_label_of_its_vanished_rows(
    bucket, s3_server, tmp_path, labeller
):
    """With another machine: A's cache knew the table before B labelled ``s.parquet``; the
    file then shrinks, and A's run must still drop the rows past its end, which only B's
    commits told of (A learns them from those commits' log entries)."""
    texts(s3_server, f"{bucket}/in/other.parquet", ["x"])
    out = f"{bucket}/labels"
    a = machine(tmp_path, "a")
    b = a if labeller == "this machine" else machine(tmp_path, "b")
    assert scripted_process(f"{bucket}/in", out, env=a).returncode == 0
    texts(s3_server, f"{bucket}/in/s.parquet", [f"message {i}" for i in range(10)])
    assert scripted_process(f"{bucket}/in", out, env=b).returncode == 0
    texts(s3_server, f"{bucket}/in/s.parquet", [f"message {i}" for i in range(6)])
    done = scripted_process(f"{bucket}/in", out, env=a)
    assert done.returncode == 0, done.stderr[-2000:]
    found = keys(out)
    assert sorted(r for f, r, p in found if f == "s.parquet" and p == "spam") == list(range(6))
    assert len(found) == (1 + 6) * 2 and max(found.values()) == 1


def test_verify_diff_report_and_eval_read_a_table_on_s3(bucket, s3_server, tmp_path):
    import polars as pl

    rows = [f"item {i}" for i in range(6)]
    texts(s3_server, f"{bucket}/in/a.parquet", rows)
    out = f"{bucket}/labels"
    policies = load_policies([POLICIES / "spam.md"])
    run([f"{bucket}/in"], policies, out, ScriptedEngine(lambda r: "0"))
    before = table_version(out)
    base = ["--input", f"{bucket}/in", "--output", out, "--policy", SPAM]
    done = CliRunner().invoke(cli, ["verify", *base])
    assert done.exit_code == 0, done.output
    edited = tmp_path / "spam.md"
    text = (POLICIES / "spam.md").read_text()
    edited.write_text(text.replace("## Definitions", "## Definitions\nX\n"))
    run([f"{bucket}/in"], load_policies([edited]), out, ScriptedEngine(lambda r: "1"))
    done = CliRunner().invoke(cli, ["diff", out, out, "--old-version", str(before), "--json",
                                    str(tmp_path / "diff.json")])  # fmt: skip
    assert done.exit_code == 0, done.output
    (policy,) = json.loads((tmp_path / "diff.json").read_text())["policies"]
    assert policy["flips"] == 6
    done = CliRunner().invoke(cli, ["report", out])
    assert done.exit_code == 0, done.output
    assert f"report written to {out}/_report.html" in done.output
    assert "<html" in place.read_bytes(f"{out}/_report.html").decode()[:500].lower()
    gold = tmp_path / "gold.parquet"
    pl.DataFrame({"id": [f"i{i}" for i in range(6)], "spam": [1, 1, 1, 0, 0, 0]}).write_parquet(
        gold
    )
    done = CliRunner().invoke(cli, ["eval", "--labels", out, "--gold", str(gold), "--json",
                                    str(tmp_path / "eval.json")])  # fmt: skip
    assert done.exit_code == 0, done.output
    spam = json.loads((tmp_path / "eval.json").read_text())["per_policy"]["spam"]
    assert spam["support"] == 6 and (spam["tp"], spam["fp"]) == (3, 3)  # the current labels: 1


def test_a_store_that_ignores_conditional_writes_is_refused_before_any_work(bucket, monkeypatch):
    s3 = object_claims.client()
    real = s3.put_object

    def careless(**kwargs):
        kwargs.pop("IfNoneMatch", None)
        return real(**kwargs)

    monkeypatch.setattr(s3, "put_object", careless)
    with pytest.raises(OutputError, match="ignores conditional writes"):
        object_claims.check_store(f"{bucket}/labels")
    monkeypatch.setattr(s3, "put_object", real)
    object_claims.check_store(f"{bucket}/labels")  # moto honours them


def test_claims_on_the_store_are_taken_once_renewed_and_taken_over_when_stale(bucket):
    out = f"{bucket}/labels"
    first, second = ObjectClaims(out, "first"), ObjectClaims(out, "second")
    assert first.claim("a.parquet|spam")
    assert not second.claim("a.parquet|spam")
    assert second.holder("a.parquet|spam")["run_id"] == "first"
    first.refresh()  # renewed with If-Match: still first's
    assert second.holder("a.parquet|spam")["run_id"] == "first"
    # A holder on another host that stopped renewing: stale after its lease, taken over.
    quick = ObjectClaims(out, "quick", lease=0.0)
    quick.me["host"] = "another-host"
    first.me["host"] = "another-host"
    assert quick.claim("b.parquet|spam")
    time.sleep(1.1)  # the store's times are whole seconds
    later = ObjectClaims(out, "later", lease=0.0)
    assert later.claim("b.parquet|spam")  # one taker wins, with If-Match on what it read
    quick.refresh()  # its renewal is refused: it knows it lost the claim
    assert "b.parquet|spam" not in quick.held
    later.release("b.parquet|spam")
    assert later.released("b.parquet|spam")
    first.release("a.parquet|spam")
    assert second.claim("a.parquet|spam")


def test_outputs_the_table_cannot_live_on_are_refused_clearly(bucket, s3_server, tmp_path):
    for output, message in [
        ("gs://some-bucket/labels", "not on gs:// yet"),
        (f"{bucket}", "name a prefix in the bucket"),
        ("s3://AKIA:secret@bucket/labels", "not in the URI"),
    ]:
        done = CliRunner().invoke(cli, ["verify", "--input", str(tmp_path), "--output", output,
                                        "--policy", SPAM])  # fmt: skip
        assert done.exit_code == 2, done.output
        assert message in done.output
    s3_server.put(f"{bucket}/data/x.csv", b"a,b")
    with pytest.raises(TableError, match="holds other objects"):
        LabelTable(f"{bucket}/data").ensure()
    with pytest.raises(UsageError, match="is under --input"):
        from batch.flow.sources import check_output_outside

        check_output_outside([f"{bucket}/data"], f"{bucket}/data/labels")
    check_output_outside([f"{bucket}/data"], f"{bucket}/data/_labels")


def test_relabel_with_a_sample_keeps_its_candidate_and_diff_beside_the_table_on_s3(
    bucket, s3_server, tmp_path
):
    from batch.job.options import LabelOptions
    from batch.job.relabel import run_relabel
    from batch.runners.local import run_label_job

    texts(s3_server, f"{bucket}/in/a.parquet", [f"item {i}" for i in range(6)])
    out = f"{bucket}/labels"
    run([f"{bucket}/in"], load_policies([POLICIES / "spam.md"]), out, answering())
    before = read_output(out)
    edited = tmp_path / "spam.md"
    edited.write_text((POLICIES / "spam.md").read_text().replace('version = "1"', 'version = "2"'))

    def label(options, command, job_spec, say):  # run_label's shape, with a scripted engine
        config = make_config([f"{bucket}/in"], load_policies([edited]), options.output,
                             sample=options.sample, sample_seed=0)  # fmt: skip
        return 0, run_label_job(config, answering(lambda r: "1"))

    fields = {f: None for f in LabelOptions.__dataclass_fields__}
    options = LabelOptions(**{**fields, "output": out, "sample": 3, "text_column": "text"})
    assert run_relabel(options, 5, ["test"], say=lambda m: None, show=lambda m: None,
                       label=label) == 0  # fmt: skip
    assert read_output(out).equals(before)  # the current labels did not change
    (candidate,) = {p.rsplit("/", 3)[-3] for p in _log_entries(s3_server, f"{out}/_candidates")}
    assert len(rows_of(f"{out}/_candidates/{candidate}")) == 3
    (diff,) = place.listing(f"{out}/_diffs", ".json")
    (spam,) = json.loads(place.read_bytes(diff))["policies"]
    assert spam["shared"] == 3


def _log_entries(s3_server, uri: str) -> list[str]:
    """The Delta log entries of every table under ``uri``."""
    from pyarrow import fs

    infos = s3_server.fs.get_file_info(fs.FileSelector(uri.split("://")[1], recursive=True))
    return [f"s3://{i.path}" for i in infos if "/_delta_log/" in i.path and i.path[-5:] == ".json"]


def test_a_store_that_cannot_be_reached_is_named_with_its_reason(bucket, monkeypatch):
    with pytest.raises(TableError, match="no such bucket"):
        LabelTable("s3://no-such-bucket-here/labels").exists()
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")  # nothing listens there
    with pytest.raises(TableError, match=r"cannot reach the table's store \(Connection refused"):
        LabelTable(f"{bucket}/labels").exists()


def test_machines_that_create_the_table_at_once_all_go_on(bucket, tmp_path):
    """Only one CREATE can make version 0 on the store; the others find the table made."""
    out = f"{bucket}/labels"
    code = f"from batch.output.table import LabelTable; LabelTable({out!r}).ensure()"
    runs = [subprocess.Popen([sys.executable, "-c", code], env=machine(tmp_path, str(n)),
                             stderr=subprocess.PIPE, text=True) for n in range(4)]  # fmt: skip
    errors = [run.communicate(timeout=120)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0, 0], errors
    assert LabelTable(out).version() == 0


def test_static_workers_with_their_own_caches_cover_an_s3_table_once(
    bucket, s3_server, tmp_path, policies, monkeypatch
):
    """Three pods of a sharded job, each with its own cache folder, on one table on S3."""
    from batch.runners.local import run_label_job
    from batch.runners.sharding import files_for_worker

    for shard in range(6):
        texts(s3_server, f"{bucket}/in/s{shard}.parquet", [f"m {shard} {i}" for i in range(4)])
    paths = [f"{bucket}/in/s{shard}.parquet" for shard in range(6)]
    out = f"{bucket}/labels"
    for index in range(3):
        monkeypatch.setenv(place.CACHE_ENV, str(tmp_path / f"pod-{index}"))
        part = files_for_worker(paths, 3, index)
        if part:
            config = make_config(part, policies, out, worker={"index": index, "count": 3},
                                 source_root=f"{bucket}/in")  # fmt: skip
            run_label_job(config, answering())
    found = keys(out)
    assert len(found) == 6 * 4 * 2 and max(found.values()) == 1
    config = make_config([f"{bucket}/in"], policies, out)
    assert verify(out, config.inputs, policies)["complete"]
