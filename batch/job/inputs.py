"""What ``label`` and ``verify`` both start from: the policies and the readable input files."""

from __future__ import annotations

from batch.errors import InputError, UsageError
from batch.flow.read import InputFile, inspect_inputs, resolve_inputs
from batch.job.options import InputOptions
from batch.policy.files import Policy, load_policies
from batch.runners.sharding import files_for_worker


def load_policies_and_inputs(
    options: InputOptions, num_workers: int = 1, worker_index: int = 0
) -> tuple[list[Policy], list[InputFile], list[dict[str, str]]]:
    """Policies, usable input files (this worker's share) and the files skipped as unreadable.

    Raises a ``PolicyError`` (exit 2) or an :class:`InputError` (exit 3) naming the file.
    """
    policies = load_policies(list(options.policies))
    try:
        paths = resolve_inputs(list(options.inputs))
        if num_workers > 1 or worker_index:
            try:
                paths = files_for_worker(paths, num_workers, worker_index)
            except ValueError as exc:
                raise UsageError(str(exc)) from exc
        inputs, skipped = inspect_inputs(
            paths,
            options.id_column,
            options.text_column,
            skip_bad=options.on_bad_file == "skip",
        )
    except InputError as exc:
        raise InputError(f"{exc} (pass --on-bad-file skip to go on with the other files)") from exc
    return policies, inputs, skipped
