"""``relabel``: label with the (edited) policies, then diff each against its previous version
in the same output, and keep the report beside the labels."""

from __future__ import annotations

from typing import Any

from batch.job.label import Say, run_label, to_stderr
from batch.job.options import LabelOptions
from batch.output.labels import previous_policy_version
from batch.output.layout import diff_path
from batch.output.write import write_json_atomic
from batch.reports.diff import diff_outputs
from batch.reports.diff_markdown import to_markdown


def run_relabel(
    options: LabelOptions,
    examples: int,
    command: list[str],
    job_spec: dict[str, Any] | None = None,
    say: Say = to_stderr,
    show: Say = print,
) -> int:
    """Run ``label``, then the diff; ``show`` gets the Markdown report. Returns the exit code."""
    code, result = run_label(options, command, job_spec, say)
    output = options.output
    reports = []
    for policy in result.manifest["policies"]:
        previous = previous_policy_version(output, policy["id"], policy["policy_sha256"])
        if previous is None:
            say(f"{policy['id']}: no earlier version in {output} to compare with")
            continue
        reports.append(
            diff_outputs(
                output,
                output,
                {"policy_id": policy["id"], "policy_sha256": previous},
                {"policy_id": policy["id"], "policy_sha256": policy["policy_sha256"]},
                examples=examples,
                text_column=options.text_column,
            )
        )
    if not reports:
        return code
    merged = {**reports[0], "policies": [p for r in reports for p in r["policies"]]}
    merged.pop("old"), merged.pop("new")
    merged["output"] = output
    merged["run_id"] = result.run_id
    text = to_markdown(merged)
    write_json_atomic(diff_path(output, result.run_id, ".json"), merged)
    diff_path(output, result.run_id, ".md").write_text(text)
    show(text)
    say(f"diff written to {diff_path(output, result.run_id, '')}.md and .json")
    return code
