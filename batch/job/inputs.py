"""What ``label`` and ``verify`` both start from: the policies and the readable input files."""

from __future__ import annotations

from batch.errors import InputError, UsageError
from batch.flow.read import inspect_inputs
from batch.flow.sources import InputFile, check_output_outside, resolve_sources
from batch.job.options import InputOptions
from batch.output.index import Index
from batch.output.place import use_cache_root
from batch.output.table import check_output
from batch.policy.files import Policy, load_policies
from batch.runners.sharding import files_for_worker


def load_policies_and_inputs(
    options: InputOptions, num_workers: int = 1, worker_index: int = 0
) -> tuple[list[Policy], list[InputFile], list[dict[str, str]]]:
    """Policies, usable input files (this worker's share) and the files skipped as unreadable.

    Raises a ``PolicyError`` or ``TableError`` (exit 2), or an :class:`InputError` (exit 3)
    naming the file. Files the output's index knows unchanged are not read.
    """
    if options.cache_dir:
        use_cache_root(options.cache_dir)
    check_output(options.output)
    check_output_outside(list(options.inputs), options.output)
    policies = load_policies(list(options.policies))
    try:
        sources = resolve_sources(list(options.inputs), options.source_root)
        if num_workers > 1 or worker_index:
            try:
                mine = set(files_for_worker([s for _, s in sources], num_workers, worker_index))
            except ValueError as exc:
                raise UsageError(str(exc)) from exc
            sources = [(path, source) for path, source in sources if source in mine]
        inputs, skipped = inspect_inputs(
            sources,
            options.id_column,
            options.text_column,
            skip_bad=options.on_bad_file == "skip",
            index=None if options.rehash else Index.if_exists(options.output),
        )
    except InputError as exc:
        raise InputError(f"{exc} (pass --on-bad-file skip to go on with the other files)") from exc
    return policies, inputs, skipped
