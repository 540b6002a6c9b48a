"""Typed options: the command line and the library agree on every name, and impossible
combinations are refused before the model loads."""

import dataclasses
import json

import pytest
from click.testing import CliRunner
from conftest import write_parquet

from batch.cli import cli, label, relabel
from batch.cli.policy import policy_test
from batch.cli.reports import verify
from batch.errors import EXIT_USAGE
from batch.flow.stats import PolicyStats, RunStats
from batch.job.options import EngineOptions, InputOptions, LabelOptions
from batch.job.pairs import parse_engine_args, parse_pairs


def names(command, *leave_out):
    return {p.name for p in command.params} - {"help", *leave_out}


def fields(cls):
    return {f.name for f in dataclasses.fields(cls)}


def test_every_option_has_a_typed_field_of_the_same_name():
    # --report is the CLI's: it writes the page after the job, from the output alone.
    assert names(label, "report") == fields(LabelOptions)
    assert names(relabel, "examples", "report") == fields(LabelOptions)
    assert names(verify, "json_path") == fields(InputOptions)
    assert names(policy_test, "files", "json_path") == fields(EngineOptions)


@pytest.fixture
def model_dir(tmp_path):
    """A directory the fingerprint accepts; vLLM would fail to load it, so nothing may try."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["GptOssForCausalLM"]}))
    (folder / "model.safetensors").write_bytes(b"\0" * 16)
    return folder


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--sample", "2", "--force"], "--sample and --force cannot be combined"),
        (["--sample", "2", "--runner", "ray"], "run it with --runner local"),
        (["--sample", "2", "--num-workers", "2"], "run it on one worker"),
        (["--engine-arg", "enforce_eager"], "'enforce_eager' is not KEY=VALUE"),
    ],
)
def test_impossible_combinations_are_usage_errors_before_the_engine_loads(
    tmp_path, small_shards, spam_policy_path, model_dir, extra, message
):
    args = [
        "label", "--input", str(small_shards), "--policy", str(spam_policy_path),
        "--model", str(model_dir), "--output", str(tmp_path / "out"), *extra,
    ]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == EXIT_USAGE, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()  # nothing ran


def test_key_value_pairs_parse_one_way():
    assert parse_pairs(["a=1", "b==2", "c="]) == {"a": "1", "b": "=2", "c": ""}
    assert parse_engine_args(["max-num-seqs=8", "kv_cache_dtype=fp8"]) == {
        "max_num_seqs": 8,
        "kv_cache_dtype": "fp8",
    }


def test_run_counts_survive_the_trip_from_a_ray_actor():
    one = RunStats(rows=3, requests=2, prompt_tokens=100, generate_seconds=1.5, commits=1)
    one.status_counts.update({"ok": 5, "parse_error": 1})
    one.per_policy["spam"] = PolicyStats(rows=3, requests_sent=2, audited=1)
    one.per_policy["spam"].status.update({"ok": 3})
    one.unreadable.append({"path": "x", "error": "bad"})
    back = RunStats.from_dict(json.loads(json.dumps(one.to_dict())))
    assert back == one
    total = RunStats()
    total.merge(back)
    total.merge(one)
    assert total.rows == 6 and total.status_counts["ok"] == 10
    assert (
        total.per_policy["spam"].requests_sent == 4 and total.per_policy["spam"].status["ok"] == 6
    )
    assert len(total.unreadable) == 2


def test_a_shard_that_breaks_midway_is_skipped_or_fails(tmp_path, spam_policy_path):
    """The local runner's unreadable-data path: a footer that reads, data that does not."""
    from helpers import answering, run

    write_parquet(tmp_path / "in" / "a.parquet", {"id": ["1", "2"], "text": ["x", "y"]})
    bad = tmp_path / "in" / "b.parquet"
    write_parquet(bad, {"id": [str(i) for i in range(50)], "text": ["z" * 200] * 50})
    raw = bytearray(bad.read_bytes())
    raw[8:600] = b"\xff" * 592  # damage the first data page, keep the footer
    bad.write_bytes(bytes(raw))
    from batch.policy.files import load_policies

    policies = load_policies([spam_policy_path])
    result = run([tmp_path / "in"], policies, tmp_path / "out", answering(), on_bad_file="skip")
    assert [s["path"] for s in result.manifest["skipped_files"]] == [str(bad)]
    assert result.manifest["counts"]["rows"] == 2  # the good file's rows
    from batch.errors import InputError

    with pytest.raises(InputError, match="unreadable data"):
        run([tmp_path / "in"], policies, tmp_path / "out2", answering())
