import subprocess
import sys
import time

from click.testing import CliRunner
from conftest import ROOT, write_parquet

from batch.cli import cli


def test_help_is_fast_and_does_not_import_vllm():
    code = (
        "import sys, time; t = time.perf_counter();"
        "from batch.cli import cli;"
        "from click.testing import CliRunner;"
        "r = CliRunner().invoke(cli, ['label', '--help']);"
        "assert r.exit_code == 0, r.output;"
        "heavy = [m for m in ('vllm', 'torch', 'openai_harmony') if m in sys.modules];"
        "print(heavy, time.perf_counter() - t)"
    )
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    elapsed = time.perf_counter() - started
    assert out.stdout.startswith("[]"), out.stdout
    assert elapsed < 1.0, elapsed


def invoke(args, env=None):
    return CliRunner().invoke(cli, args, env=env, catch_exceptions=False)


def base_args(tmp_path, shards, spam_policy_path):
    return [
        "label",
        "--input",
        str(shards),
        "--policy",
        str(spam_policy_path),
        "--model",
        str(tmp_path / "no-model"),
        "--output",
        str(tmp_path / "out"),
    ]


def test_missing_vocabulary_is_one_clear_message(tmp_path, small_shards, spam_policy_path):
    env = {"TIKTOKEN_ENCODINGS_BASE": ""}
    result = invoke(base_args(tmp_path, small_shards, spam_policy_path), env=env)
    assert result.exit_code == 2
    assert "TIKTOKEN_ENCODINGS_BASE" in result.output and "o200k_base.tiktoken" in result.output
    assert "Traceback" not in result.output
    result = invoke(
        [*base_args(tmp_path, small_shards, spam_policy_path), "--vocab-dir", str(tmp_path)],
        env=env,
    )
    assert result.exit_code == 2 and "holds no o200k_base.tiktoken" in result.output


def test_missing_column_fails_before_any_model_work(tmp_path, spam_policy_path):
    bad = write_parquet(tmp_path / "in" / "x.parquet", {"id": [1], "body": ["hi"]})
    result = invoke(base_args(tmp_path, tmp_path / "in", spam_policy_path))
    assert result.exit_code == 3
    assert str(bad) in result.output and "body" in result.output


def test_missing_model_directory_is_a_usage_error(tmp_path, small_shards, spam_policy_path):
    result = invoke(base_args(tmp_path, small_shards, spam_policy_path))
    assert result.exit_code == 2 and "not a local model directory" in result.output


def test_bad_policy_is_a_usage_error(tmp_path, small_shards):
    policy = tmp_path / "p.md"
    policy.write_text('+++\nid = "p"\nversion = "1"\n+++\nbody\n')
    args = base_args(tmp_path, small_shards, policy)
    result = invoke(args)
    assert result.exit_code == 2 and "lacks output" in result.output


def test_engine_args_parse_json_values():
    from batch.job.pairs import parse_engine_args

    assert parse_engine_args(("enforce_eager=true", "block-size=32", "kv_cache_dtype=fp8")) == {
        "enforce_eager": True,
        "block_size": 32,
        "kv_cache_dtype": "fp8",
    }
