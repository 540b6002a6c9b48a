"""The local runner: stream every input's chunks through one Labeller in this process.

Chunks are gathered until they hold ``--batch-size`` requests, then labelled as one group (one
engine call) and written before the next group is read, so memory stays bounded and a killed
run loses at most the group in flight.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pyarrow as pa

from batch.engine.base import Engine
from batch.errors import InputError
from batch.flow.chunks import Chunk, iter_chunks
from batch.flow.config import JobConfig
from batch.flow.labeller import Labeller
from batch.flow.prompts import JobPrompts
from batch.flow.sample import sample_rows
from batch.runners.run import RunRecorder, RunResult

log = logging.getLogger(__name__)


def _chunks(config: JobConfig, recorder: RunRecorder) -> Iterator[Chunk]:
    """Every chunk to label, file by file; a file unreadable midway is skipped or fails."""
    sampled = (
        sample_rows(config.inputs, config.sample, config.sample_seed) if config.sample else None
    )
    for source in config.inputs:
        wanted = sampled.get(source.path) if sampled is not None else None
        if sampled is not None and not wanted:
            continue
        chunks = iter_chunks(
            source, config.id_column, config.text_column, config.chunk_size, wanted
        )
        try:
            yield from chunks
        except (OSError, pa.ArrowException, UnicodeDecodeError) as exc:
            # The footer was fine but the data is not: what was read is kept.
            if config.on_bad_file != "skip":
                raise InputError(f"{source.path}: unreadable data ({exc})") from exc
            recorder.stats.unreadable.append({"path": source.path, "error": str(exc)})
            log.warning("skipping the rest of %s: %s", source.path, exc)


def _groups(config: JobConfig, recorder: RunRecorder) -> Iterator[list[Chunk]]:
    """Chunks gathered until they hold ``batch_size`` requests (rows x policies)."""
    group: list[Chunk] = []
    requests = 0
    for chunk in _chunks(config, recorder):
        group.append(chunk)
        requests += chunk.size * len(config.policies)
        if requests >= config.batch_size:
            yield group
            group, requests = [], 0
    if group:
        yield group


def total_rows(config: JobConfig) -> int:
    """Rows this run will label: the inputs' rows, or the sample's size."""
    if config.sample is None:
        return sum(f.num_rows for f in config.inputs)
    return min(config.sample, sum(f.num_rows for f in config.inputs))


def run_label_job(config: JobConfig, engine: Engine, progress: bool = False) -> RunResult:
    """Label every input row under every policy and write output plus a run manifest."""
    from tqdm import tqdm

    prompts = JobPrompts.for_job(config)
    recorder = RunRecorder(config, prompts, engine.describe())
    labeller = Labeller(config, engine, recorder.run_id, prompts)
    bar = tqdm(
        total=total_rows(config),
        unit="item",
        disable=not progress,
        desc=f"labelling x{len(config.policies)} policies",
        dynamic_ncols=True,
    )
    with bar:
        for group in _groups(config, recorder):
            recorder.add(labeller.process(group))
            bar.update(sum(chunk.size for chunk in group))
    return recorder.finish()
