"""The local runner: stream every input's chunks through one Labeller in this process.

Chunks are gathered until they hold ``--batch-size`` requests: a group, planned together and
committed as one upsert as soon as its last request is answered. Groups overlap in the engine
(``flow.stream``: at most ``--max-in-flight`` requests at once), so it never drains between
them, memory stays bounded and a killed run loses at most the open groups. Files complete
already are not read; files another live run is labelling are waited for (``runners.files``),
and a file's claim is released once every group holding its rows has committed.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pyarrow as pa

from batch.engine.base import Engine
from batch.errors import InputError
from batch.flow.chunks import Chunk, iter_chunks
from batch.flow.collector import few_collections
from batch.flow.config import JobConfig
from batch.flow.labeller import Labeller
from batch.flow.prompts import JobPrompts
from batch.flow.sample import sample_rows
from batch.flow.stream import GroupStream
from batch.output.claims import Claims
from batch.output.object_claims import open_claims
from batch.output.table import LabelTable
from batch.runners.files import (
    FilePlan,
    claim_key,
    finish_files,
    had_rows,
    plan_files,
    skipped_stats,
)
from batch.runners.run import RunRecorder, RunResult

log = logging.getLogger(__name__)


def _chunks(
    config: JobConfig, plans: list[FilePlan], sampled: dict | None, recorder: RunRecorder
) -> Iterator[tuple[Chunk, FilePlan | None]]:
    """Every chunk to label, file by file, each followed by its file's plan once it is read
    whole; a file unreadable midway is skipped (``--on-bad-file skip``) or fails the run."""
    for plan in plans:
        source = plan.source
        wanted = sampled.get(source.path) if sampled is not None else None
        if not plan.policies or (sampled is not None and not wanted):
            continue
        chunks = iter_chunks(
            source, config.id_column, config.text_column, config.chunk_size, wanted
        )
        last: Chunk | None = None
        try:
            for chunk in chunks:
                chunk.policies = plan.policies
                if last is not None:
                    yield last, None
                last = chunk
        except (OSError, pa.ArrowException, UnicodeDecodeError) as exc:
            # The footer was fine but the data is not: what was read is kept.
            if config.on_bad_file != "skip":
                raise InputError(f"{source.path}: unreadable data ({exc})") from exc
            recorder.stats.unreadable.append({"path": source.path, "error": str(exc)})
            log.warning("skipping the rest of %s: %s", source.path, exc)
        if last is not None:
            yield last, plan


def _groups(
    config: JobConfig, plans: list[FilePlan], sampled: dict | None, recorder: RunRecorder
) -> Iterator[tuple[list[Chunk], list[FilePlan]]]:
    """Chunks gathered until they hold ``batch_size`` requests, and the files they finish."""
    group: list[Chunk] = []
    finished: list[FilePlan] = []
    requests = 0
    for chunk, done in _chunks(config, plans, sampled, recorder):
        group.append(chunk)
        finished += [done] if done is not None else []
        requests += chunk.size * len(chunk.policies or config.policies)
        if requests >= config.batch_size:
            yield group, finished
            group, finished, requests = [], [], 0
    if group:
        yield group, finished


def max_in_flight(config: JobConfig, engine: Engine) -> int:
    """``--max-in-flight``, else enough to keep every sequence slot busy while finished
    requests are replaced: 4 x the engine's slots (vLLM's max_num_seqs), else a batch."""
    if config.max_in_flight is not None:
        return config.max_in_flight
    slots = getattr(engine, "slots", None)
    return 4 * slots if slots else config.batch_size


class FileReleases:
    """Once every group holding a file's rows has committed (groups commit in any order, so
    the group that finishes a file may commit before an earlier one): marks the file complete
    or not (``on_done``), then releases its claim, so another run waiting for it skips it."""

    def __init__(
        self, claims: Claims, config: JobConfig, on_done: Callable[[FilePlan], None]
    ) -> None:
        self.claims, self.config, self.on_done = claims, config, on_done
        self.open_groups: Counter[str] = Counter()
        self.finished: dict[str, FilePlan] = {}
        self.done: set[str] = set()

    def opened(self, group: list[Chunk]) -> set[str]:
        paths = {chunk.source.path for chunk in group}
        self.open_groups.update(paths)
        return paths

    def committed(self, paths: set[str], finished: list[FilePlan]) -> None:
        self.open_groups.subtract(paths)
        self.finished.update({plan.source.path: plan for plan in finished})
        for path in [p for p in self.finished if self.open_groups[p] <= 0]:
            plan = self.finished.pop(path)
            self.on_done(plan)
            self.done.add(path)
            self.claims.release(claim_key(plan.source, self.config))


def total_rows(config: JobConfig) -> int:
    """Rows this run will label: the inputs' rows, or the sample's size."""
    if config.sample is None:
        return sum(f.num_rows for f in config.inputs)
    return min(config.sample, sum(f.num_rows for f in config.inputs))


CLAIM_POLL_SECONDS = 1.0  # how often a run waiting for another's files looks again


def run_label_job(config: JobConfig, engine: Engine, progress: bool = False) -> RunResult:
    """Label every input row under every policy and write output plus a run manifest.

    Files another live run has claimed are waited for, not skipped: once their claims are
    released (or go stale: a dead holder), they are planned again and labelled if that run
    did not finish them. So a run that exits 0 has every one of its inputs labelled.
    """
    from tqdm import tqdm

    LabelTable(config.output).ensure()
    prompts = JobPrompts.for_job(config)
    prompts.check_fits(config.max_model_len, config.sampling.max_tokens)
    recorder = RunRecorder(config, prompts, engine.describe())
    labeller = Labeller(config, engine, recorder.run_id, prompts)
    sampled = (
        sample_rows(config.inputs, config.sample, config.sample_seed) if config.sample else None
    )
    bar = tqdm(
        total=total_rows(config),
        unit="item",
        disable=not progress,
        desc=f"labelling x{len(config.policies)} policies",
        dynamic_ncols=True,
    )
    worker = (config.worker.get("index", 0), config.worker.get("count", 1))
    claims = open_claims(config.output, recorder.run_id, worker=worker)
    with few_collections(), claims, bar:
        run = _Run(config, labeller, recorder, claims, sampled, bar)
        try:
            waiting = run.label(None, by_others=False)
            while waiting:
                waiting = run.wait_for(waiting)
        finally:
            labeller.close()
    return recorder.finish()


class _Run:
    """One run's labelling of some of its files: plan them, stream them, mark them."""

    def __init__(self, config, labeller, recorder, claims, sampled, bar) -> None:
        self.config, self.labeller, self.recorder = config, labeller, recorder
        self.claims, self.sampled, self.bar = claims, sampled, bar
        self.output = (labeller.table, labeller.index)
        self.labeller.had_rows = set()

    def label(self, sources: list | None, by_others: bool) -> list[FilePlan]:
        """Label these files (None: every input); the plans of those another run holds."""
        config, prompts = self.config, self.labeller.prompts
        plans = plan_files(config, prompts, self.output, self.claims, sources)
        held = [plan for plan in plans if plan.claimed_by]
        mine = [plan for plan in plans if not plan.claimed_by]
        self.labeller.had_rows |= had_rows(mine)
        self.labeller.store.reserve(sum(p.source.num_rows * len(p.policies) for p in mine))
        skipped = skipped_stats(mine, config, self.sampled, by_others)
        self.recorder.add(skipped)
        self.bar.update(skipped.rows)

        def mark(plan: FilePlan) -> None:
            finish_files([plan], self.recorder.stats, config, prompts, self.output)

        releases = FileReleases(self.claims, config, mark)
        groups = (
            (group, (releases.opened(group), finished))
            for group, finished in _groups(config, mine, self.sampled, self.recorder)
        )
        engine = self.labeller.engine
        stream = GroupStream(self.labeller, max_in_flight(config, engine), self.bar.update)
        for stats, payload in stream.run(groups):
            self.recorder.add(stats)
            if payload is not None:  # the group is written whole
                releases.committed(*payload)
        rest = [plan for plan in mine if plan.source.path not in releases.done]  # no rows
        finish_files(rest, self.recorder.stats, config, prompts, self.output)
        return held

    def wait_for(self, held: list[FilePlan]) -> list[FilePlan]:
        """Wait until some held files are free: a file its run finished (its claim released)
        is counted as left to it; one whose claim went stale (its run died) is labelled
        here. Returns the files still held."""
        log.warning(
            "waiting for %d file(s) another live run is labelling (%s)",
            len(held),
            ", ".join(sorted({plan.claimed_by or "" for plan in held})),
        )
        keys = {plan.source.path: claim_key(plan.source, self.config) for plan in held}
        while True:
            time.sleep(CLAIM_POLL_SECONDS)
            free = [p for p in held if self.claims.holder(keys[p.source.path]) is None]
            if free:
                break
        finished = [p for p in free if self.claims.released(keys[p.source.path])]
        others = skipped_stats(finished, self.config, self.sampled, by_others=True)
        self.recorder.add(others)
        self.bar.update(others.rows)
        stale = [p for p in free if p not in finished]
        still = [p for p in held if p not in free]
        return still + (self.label([p.source for p in stale], by_others=True) if stale else [])
