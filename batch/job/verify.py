"""``verify``: does the output hold exactly one row per (input row, policy)?"""

from __future__ import annotations

from typing import Any

from batch.job.inputs import load_policies_and_inputs
from batch.job.options import InputOptions
from batch.reports.verify import verify


def verify_output(options: InputOptions) -> dict[str, Any]:
    """The verify report over the inputs that can be read; ``skipped_files`` lists the rest."""
    policies, inputs, skipped = load_policies_and_inputs(options)
    report = verify(options.output, inputs, policies, (options.id_column, options.text_column))
    report["skipped_files"] = skipped
    return report
