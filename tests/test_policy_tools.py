"""policy lint / hash / test: the tools that let a policy change be checked like code."""

import hashlib
import json

import pytest
from click.testing import CliRunner
from conftest import POLICIES

from batch.cli import cli
from batch.engine.base import SamplingSettings
from batch.engine.scripted import ScriptedEngine
from batch.job.policy_checks import format_test_results, policy_hashes, run_policy_tests
from batch.policy.files import load_policies
from batch.policy.lint import lint_policy

ALL_POLICIES = sorted(POLICIES.rglob("*.md"))


def test_every_shipped_policy_passes_lint_without_warnings():
    assert len(ALL_POLICIES) == 10  # spam, harassment and the 8 categories of 2022
    for path in ALL_POLICIES:
        report = lint_policy(path)
        assert report.ok and not report.warnings, (path, report)
        assert 400 <= report.tokens <= 600 and report.examples == 6 and report.tests >= 2
    result = CliRunner().invoke(cli, ["policy", "lint", *map(str, ALL_POLICIES)])
    assert result.exit_code == 0, result.output


def test_the_2022_taxonomy_has_a_policy_per_category():
    ids = {p.id for p in load_policies(sorted((POLICIES / "moderation-2022").glob("*.md")))}
    assert ids == {"s", "h", "v", "hr", "sh", "s3", "h2", "v2"}


def without(text, start, end):
    head, rest = text.split(start, 1)
    return head + end + rest.split(end, 1)[1]


def test_a_policy_without_an_output_format_fails_with_a_clear_message(tmp_path):
    source = (POLICIES / "spam.md").read_text()
    no_key = tmp_path / "no-key.md"
    no_key.write_text(source.replace('output = "binary"\n', ""))
    report = lint_policy(no_key)
    assert not report.ok
    assert any("no 'output'" in e and "binary, json" in e for e in report.errors)
    unstated = tmp_path / "unstated.md"
    unstated.write_text(source.split("## Output format")[0])
    report = lint_policy(unstated)
    assert any("never states the output format" in e for e in report.errors)
    assert any("'output format' section" in w for w in report.warnings)
    result = CliRunner().invoke(cli, ["policy", "lint", str(no_key), str(POLICIES / "spam.md")])
    assert result.exit_code == 1
    assert f"{no_key}: 1 error(s)" in result.output and "spam.md: ok" in result.output


def test_lint_warns_about_weak_policies(tmp_path):
    weak = tmp_path / "weak.md"
    weak.write_text(
        '+++\nid = "w"\nversion = "1"\noutput = "json"\n+++\n# W\n## Examples\n'
        '- "bad" -> 1\n## Output format\nReply {"violation": 0 or 1}.\n'
    )
    report = lint_policy(weak)
    assert report.ok  # usable, but far from the guide
    text = " ".join(report.warnings)
    for expected in ("instructions", "definitions", "1 labelled examples", "only one label"):
        assert expected in text
    assert f"{report.tokens} tokens; the guide's sweet spot is 400-600" in text
    broken = tmp_path / "broken.md"
    broken.write_text("# no front matter\n")
    assert "must start with a '+++' line" in lint_policy(broken).errors[0]
    bad_tests = tmp_path / "bad-tests.md"
    bad_tests.write_text(
        (POLICIES / "spam.md").read_text().replace("expected = 1", "expected = 7", 1)
    )
    assert any("'expected' = 0 or 1" in e for e in lint_policy(bad_tests).errors)


def test_hash_prints_what_a_run_records(tmp_path):
    from batch.flow.render import render_prefix

    path = POLICIES / "spam.md"
    hashes = policy_hashes(path, "medium")
    assert hashes["policy_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    (policy,) = load_policies([path])
    assert hashes["prompt_sha256"] == render_prefix(policy, "medium").sha256
    result = CliRunner().invoke(cli, ["policy", "hash", str(path), "--json"])
    assert result.exit_code == 0
    printed = json.loads(result.output)
    assert printed["policy_sha256"] == hashes["policy_sha256"]
    assert printed["prompt_sha256"] == render_prefix(policy, "low").sha256


def test_policy_test_reports_passes_and_failures_with_the_rationale(policies):
    spam = policies[0]

    def answers(request):
        from batch.vocab import load_encoding

        text = load_encoding().decode(list(request.prompt_token_ids))
        user = text.rsplit("<|start|>user<|message|>", 1)[1]
        if "cruise" in user:
            return "0"  # a wrong verdict
        if "ringtones" in user:
            return "perhaps"  # not a verdict at all
        return "1" if "WIN" in user else "0"

    results = run_policy_tests(
        [spam], ScriptedEngine(answers), "tiny", "f" * 64, "low", SamplingSettings(), 4096
    )
    assert [(r.number, r.passed) for r in results] == [(1, False), (2, False), (3, True), (4, True)]
    assert results[1].status == "parse_error"
    shown = format_test_results(results)
    assert "FAIL spam #1: expected 1, got 0" in shown
    assert "FAIL spam #2: expected 1, got parse_error" in shown
    assert "model's reasoning: Checked the content against the policy." in shown
    assert shown.endswith("2/4 test cases passed")


def test_policy_test_refuses_a_policy_without_cases(tmp_path):
    bare = tmp_path / "bare.md"
    source = (POLICIES / "spam.md").read_text()
    bare.write_text(
        "+++" + source.split("+++")[1].split("\n[[tests]]")[0] + "\n+++" + source.split("+++", 2)[2]
    )
    result = CliRunner().invoke(cli, ["policy", "test", str(bare), "--model", str(tmp_path)])
    assert result.exit_code == 2 and "no [[tests]] cases" in result.output


@pytest.mark.parametrize("name", ["spam.md", "harassment.md"])
def test_test_cases_do_not_change_the_prompt(name):
    from batch.flow.render import render_prefix

    (policy,) = load_policies([POLICIES / name])
    assert "[[tests]]" not in policy.text and "expected" not in policy.text
    assert render_prefix(policy).token_ids  # the body alone is rendered
