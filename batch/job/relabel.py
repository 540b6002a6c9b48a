"""``relabel``: try an edited policy and see what flips.

With ``--sample N`` the new labels go to a **candidate** table beside the real one
(``OUT/_candidates/<id>/``): the current labels do not change, and the diff compares the
candidate with them. Without it the run updates the current labels (promotion) and the diff
compares the table before the run with the table after it; the replaced labels stay readable
at the earlier version until vacuumed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from batch.job.label import Say, run_label, to_stderr
from batch.job.options import LabelOptions
from batch.output.layout import candidate_path, diff_path
from batch.output.table import LabelTable
from batch.output.write import write_json_atomic, write_text_atomic
from batch.reports.diff.compare import LabelSet, diff_outputs
from batch.reports.diff.markdown import to_markdown
from batch.runners.run import new_run_id

Label = Callable[..., tuple[int, Any]]  # run_label's shape: (options, command, spec, say)


def _label_sets(
    options: LabelOptions,
    command: list[str],
    job_spec: dict[str, Any] | None,
    say: Say,
    label: Label,
) -> tuple[int, Any, LabelSet | None, LabelSet]:
    """Run the labelling; the exit code, the result and the two sides to compare."""
    if options.sample is not None:
        candidate = str(candidate_path(options.output, new_run_id(datetime.now(timezone.utc))))
        say(f"sample run: new labels go to the candidate table {candidate}")
        code, result = label(dataclasses.replace(options, output=candidate), command, job_spec, say)
        before = LabelSet(options.output) if LabelTable(options.output).exists() else None
        return code, result, before, LabelSet(candidate)
    version = LabelTable(options.output).version()
    code, result = label(options, command, job_spec, say)
    before = None if version is None else LabelSet(options.output, version=version)
    return code, result, before, LabelSet(options.output)


def run_relabel(
    options: LabelOptions,
    examples: int,
    command: list[str],
    job_spec: dict[str, Any] | None = None,
    say: Say = to_stderr,
    show: Say = print,
    label: Label = run_label,
) -> int:
    """Run ``label`` (into a candidate with ``--sample``), then the diff; ``show`` gets the
    Markdown report. Returns the exit code."""
    code, result, before, after = _label_sets(options, command, job_spec, say, label)
    if before is None:
        say(f"{options.output}: no earlier labels to compare with")
        return code
    reports = [
        diff_outputs(
            dataclasses.replace(before, where={"policy_id": policy["id"]}),
            dataclasses.replace(after, where={"policy_id": policy["id"]}),
            examples=examples,
            text_column=options.text_column,
        )
        for policy in result.manifest["policies"]
    ]
    merged = {**reports[0], "policies": [p for r in reports for p in r["policies"]]}
    for side in ("old", "new"):
        merged[side] = {**merged[side], "where": {}}
    merged["output"] = options.output
    merged["run_id"] = result.run_id
    text = to_markdown(merged)
    write_json_atomic(diff_path(options.output, result.run_id, ".json"), merged)
    write_text_atomic(diff_path(options.output, result.run_id, ".md"), text)
    show(text)
    say(f"diff written to {diff_path(options.output, result.run_id, '')}.md and .json")
    return code
