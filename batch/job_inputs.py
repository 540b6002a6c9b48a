"""What ``label`` and ``verify`` both start from: the policies and the readable input files."""

from __future__ import annotations

from typing import Any

from batch.errors import EXIT_BAD_INPUT, EXIT_USAGE, JobFailure
from batch.policy import Policy, PolicyError, load_policies
from batch.read import InputError, InputFile, inspect_inputs, resolve_inputs


def load_policies_and_inputs(
    opts: dict[str, Any],
) -> tuple[list[Policy], list[InputFile], list[dict[str, str]]]:
    """Policies, usable input files and the files skipped under ``--on-bad-file skip``.

    Raises :class:`JobFailure` (exit 2 for a policy, 3 for an input) with one clear line.
    """
    try:
        policies = load_policies(list(opts["policies"]))
    except PolicyError as exc:
        raise JobFailure(str(exc), EXIT_USAGE) from exc
    try:
        paths = resolve_inputs(list(opts["inputs"]))
        workers = opts.get("num_workers") or 1
        if workers > 1 or opts.get("worker_index"):
            from batch.sharding import files_for_worker

            try:
                paths = files_for_worker(paths, workers, opts.get("worker_index") or 0)
            except ValueError as exc:
                raise JobFailure(str(exc), EXIT_USAGE) from exc
        inputs, skipped = inspect_inputs(
            paths,
            opts["id_column"],
            opts["text_column"],
            skip_bad=opts["on_bad_file"] == "skip",
        )
    except InputError as exc:
        raise JobFailure(
            f"{exc} (pass --on-bad-file skip to go on with the other files)", EXIT_BAD_INPUT
        ) from exc
    return policies, inputs, skipped
