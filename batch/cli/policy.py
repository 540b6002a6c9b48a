"""``policy lint``, ``policy hash`` and ``policy test``: tools for policy writers."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from batch.cli.base import cli, write_json
from batch.cli.engine_options import ENGINE_OPTIONS, VOCAB_OPTION
from batch.cli.options import JSON_OPTION, options
from batch.errors import EXIT_CHECK_FAILED


@cli.group()
def policy() -> None:
    """Tools for policy writers: lint, hash and test policy files."""


@policy.command("lint")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@JSON_OPTION
@VOCAB_OPTION
def policy_lint(files: tuple[str, ...], json_path: str | None, vocab_dir: str | None) -> None:
    """Check policies: front matter, sections, stated output format, examples, token count.

    Errors make a policy unusable or unparseable (exit 1); warnings are departures from
    OpenAI's guide (sections, 4-6 labelled examples, 400-600 tokens).
    """
    from batch.policy.lint import lint_policy, lint_text
    from batch.vocab import use_vocab_dir

    use_vocab_dir(vocab_dir)
    reports = [lint_policy(path) for path in files]
    for report in reports:
        click.echo(lint_text(report))
    write_json(json_path, {"policies": [r.as_dict() for r in reports]})
    if not all(r.ok for r in reports):
        sys.exit(EXIT_CHECK_FAILED)


@policy.command("hash")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option(
    "--reasoning-effort",
    type=click.Choice(["low", "medium", "high"]),
    default="low",
    show_default=True,
    help="The prompt hash depends on it.",
)
@VOCAB_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def policy_hash(
    files: tuple[str, ...], reasoning_effort: str, vocab_dir: str | None, as_json: bool
) -> None:
    """Print the hashes a run records: policy_sha256 (the file) and prompt_sha256."""
    from batch.job.policy_checks import policy_hashes
    from batch.vocab import use_vocab_dir

    use_vocab_dir(vocab_dir)
    for path in files:
        hashes = policy_hashes(path, reasoning_effort)
        if as_json:
            click.echo(json.dumps(hashes))
            continue
        prompt = hashes["prompt_sha256"] or "unavailable (no vocabulary; see --vocab-dir)"
        click.echo(
            f"{hashes['path']}: id {hashes['id']}, version {hashes['version']}\n"
            f"  policy_sha256 {hashes['policy_sha256']}\n"
            f"  prompt_sha256 {prompt} (reasoning effort {reasoning_effort})"
        )


@policy.command("test")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@JSON_OPTION
@options(ENGINE_OPTIONS)
def policy_test(files: tuple[str, ...], json_path: str | None, **params: Any) -> None:
    """Run the [[tests]] cases in each policy's front matter through the model.

    Exit 1 if any case fails (each failure is shown with the model's rationale or
    reasoning), 2 if a policy has no test cases or cannot be loaded.
    """
    from dataclasses import asdict

    from batch.job.options import EngineOptions
    from batch.job.policy_checks import check_policies, format_test_results

    results = check_policies(list(files), EngineOptions(**params))
    click.echo(format_test_results(results))
    write_json(json_path, {"results": [asdict(r) for r in results]})
    if not all(r.passed for r in results):
        sys.exit(EXIT_CHECK_FAILED)
