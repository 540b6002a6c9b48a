"""Declarative job specs: templating, overrides, validation and the shipped examples."""

import json
import shlex
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import ROOT

from batch.cli import cli, label, relabel
from batch.cli.spec import to_arguments
from batch.job.spec import JobSpecError, apply_overrides, default_run_date, resolve

JOBS = sorted((ROOT / "jobs").glob("*.toml"))


def test_three_job_specs_ship_and_each_parses_into_its_command():
    names = {p.stem for p in JOBS}
    assert {
        "nightly-backfill",
        "relabel-policy-change",
        "air-gapped",
        "ray-backfill",
        "k8s-indexed",
        "weekly-review",
        "weekly-review-import",
    } <= names
    for path in JOBS:
        spec = resolve(path, [], date(2026, 11, 27))
        if spec["command"].startswith("review-"):
            continue  # below: their paths must exist to parse
        command = relabel if spec.get("command") == "relabel" else label
        ctx = command.make_context(command.name, to_arguments(spec, command, str(path)))
        assert ctx.params["output"] and ctx.params["model"] and ctx.params["policies"]


def test_the_weekly_review_specs_are_the_review_commands(tmp_path):
    from batch.cli.review import review

    for name, spec in (("export", "weekly-review"), ("import", "weekly-review-import")):
        resolved = resolve(ROOT / "jobs" / f"{spec}.toml", [], date(2026, 11, 27))
        args = to_arguments(resolved, review.commands[name], spec)
        assert "review/2026-11-27/" in " ".join(args)
    export = resolve(ROOT / "jobs" / "weekly-review.toml", [], date(2026, 11, 27))
    args = to_arguments(export, review.commands["export"], "weekly-review")
    assert args.count("--select") == 2 and "uncertain:200" in args and "sample:100" in args
    result = CliRunner().invoke(cli, ["run", str(ROOT / "jobs" / "weekly-review.toml"),
                                      "--date", "2026-11-27", "--dry-run"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.startswith("safeguard-batch review export --labels /data/labels")


def test_nightly_spec_templates_the_input_by_date():
    spec = resolve(ROOT / "jobs" / "nightly-backfill.toml", [], date(2026, 11, 27))
    assert spec["inputs"] == ["/data/content/date=2026-11-27/"]
    assert default_run_date(datetime(2026, 11, 28, 1, 0, tzinfo=timezone.utc)) == date(2026, 11, 27)


def test_air_gapped_spec_uses_only_local_paths():
    spec = resolve(ROOT / "jobs" / "air-gapped.toml", [], date(2026, 11, 27))
    for key in ("output", "model", "vocab_dir"):
        assert spec[key].startswith("/")
    assert all(p.startswith("/") for p in spec["inputs"] + spec["policies"])


def test_set_overrides_parse_toml_values_tables_and_removal():
    spec = {"max_tokens": 1024, "inputs": ["a"], "sample": 5, "engine_args": {"x": 1}}
    out = apply_overrides(
        spec,
        ["max_tokens=256", 'inputs=["b", "c"]', "model=/m", "sample=", "engine_args.y=true"],
    )
    assert out == {
        "max_tokens": 256,
        "inputs": ["b", "c"],
        "model": "/m",
        "engine_args": {"x": 1, "y": True},
    }
    assert spec["max_tokens"] == 1024  # the loaded spec is not modified
    with pytest.raises(JobSpecError, match="KEY=VALUE"):
        apply_overrides(spec, ["nothing"])


def test_unknown_keys_and_bad_types_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('inputs = ["x"]\ncolour = "red"\n')
    with pytest.raises(JobSpecError, match="unknown key 'colour'"):
        to_arguments(resolve(bad, [], date.today()), label, str(bad))
    bad.write_text('command = "destroy"\n')
    with pytest.raises(JobSpecError, match="command must be"):
        resolve(bad, [], date.today())
    bad.write_text("force = 3\n")
    with pytest.raises(JobSpecError, match="true or false"):
        to_arguments(resolve(bad, [], date.today()), label, str(bad))


def test_run_dry_run_prints_the_resolved_spec_and_the_equivalent_command(tmp_path):
    spec = ROOT / "jobs" / "nightly-backfill.toml"
    result = CliRunner().invoke(
        cli,
        ["run", str(spec), "--date", "2026-01-02", "--set", "max_tokens=64",
         "--set", "max_in_flight=512", "--dry-run"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    *resolved, command = result.output.strip().splitlines()
    assert json.loads("\n".join(resolved))["max_tokens"] == 64
    argv = shlex.split(command)
    assert argv[:2] == ["safeguard-batch", "label"]
    assert argv[argv.index("--input") + 1] == "/data/content/date=2026-01-02/"
    assert argv[argv.index("--max-tokens") + 1] == "64"
    assert argv[argv.index("--max-in-flight") + 1] == "512"


def test_run_reports_spec_errors_with_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("this is = = not toml")
    result = CliRunner().invoke(cli, ["run", str(bad)])
    assert result.exit_code == 2 and "not valid TOML" in result.output
    Path(tmp_path / "typo.toml").write_text("temprature = 1.0\n")
    result = CliRunner().invoke(cli, ["run", str(tmp_path / "typo.toml")])
    assert result.exit_code == 2 and "unknown key 'temprature'" in result.output
