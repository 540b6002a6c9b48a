"""Run the labelling job on a Ray cluster: ``--replicas`` engine actors that stream.

Each actor holds one engine (``--gpus-per-replica`` GPUs, for tensor parallelism) and runs
exactly the local runner's stream on it (``flow.stream.GroupStream``): requests enter the
engine as others finish, and each group of chunks commits when its last answer is in, so the
slowest request of a batch never idles an actor. Actors pull their chunks from one
``ChunkQueue`` actor as their engine has room, reading each chunk's rows straight from the
shard (only the row groups it needs). Chunk identities, resume, skip and the table are
therefore those of a local run; the driver keeps the run manifest (``RunRecorder``), merging
the counts every actor reports as it goes.

An actor that dies (its process killed, its node lost) is replaced, up to ``MAX_REPLACEMENTS``
times a run: the chunks it had taken and not finished go back to the queue, and what it had
committed of them is written again by whoever takes them (every write is an upsert, so a row
is never doubled). Beyond that the run stops non-zero, and a rerun resumes it.

Chunks are cut from the files' metadata (their row counts), so a chunk is the same chunk
whoever labels it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from batch.engine.base import Engine
from batch.errors import SafeguardError
from batch.flow.chunks import chunk_count, read_chunk
from batch.flow.collector import few_collections
from batch.flow.config import JobConfig
from batch.flow.labeller import Labeller
from batch.flow.prompts import JobPrompts
from batch.flow.stats import RunStats
from batch.flow.stream import GroupStream
from batch.output.index import Index
from batch.output.object_claims import open_claims
from batch.output.place import CACHE_ENV
from batch.output.table import LabelTable
from batch.runners.files import FilePlan, finish_files, had_rows, plan_files, skipped_stats
from batch.runners.local import max_in_flight
from batch.runners.run import RunRecorder, RunResult

EngineFactory = Callable[[], Engine]
MAX_REPLACEMENTS = 8  # actors replaced in one run before it gives up (a rerun resumes)
REPORT_SECONDS = 1.0  # how often the driver collects the actors' counts
log = logging.getLogger(__name__)


class RayRunError(SafeguardError):
    """Actors kept dying: what they committed is kept, a rerun labels the rest (exit 4)."""

    exit_code = 4


def chunk_descriptors(config: JobConfig, plans: list[FilePlan]) -> list[dict[str, Any]]:
    """One record per chunk of every file to label, from the files' row counts."""
    return [
        {"file": number, "index": index, "policies": ",".join(sorted(plan.policies))}
        for number, plan in enumerate(plans)
        if plan.policies
        for index in range(chunk_count(plan.source, config.chunk_size))
    ]


class ChunkQueue:
    """The run's chunks, handed out a group at a time; keeps what each actor took until it
    says the group is written whole, so a dead actor's unfinished chunks can go back."""

    def __init__(self, records: list[dict[str, Any]], per_group: int) -> None:
        self.todo = deque(records)
        self.per_group = max(1, per_group)
        self.taken: dict[str, dict[int, list[dict[str, Any]]]] = {}
        self.reports: list[str] = []
        self.pids: dict[str, int] = {}
        self._groups = 0

    def hello(self, worker: str, pid: int) -> None:
        self.pids[worker] = pid

    def take(self, worker: str) -> tuple[int, list[dict[str, Any]]] | None:
        """The next group of chunks for ``worker``, or None when there are none left."""
        if not self.todo:
            return None
        group = [self.todo.popleft() for _ in range(min(self.per_group, len(self.todo)))]
        self._groups += 1
        self.taken.setdefault(worker, {})[self._groups] = group
        return self._groups, group

    def report(self, worker: str, stats: list[str], done: list[int]) -> None:
        """Counts of commits and groups written whole; the groups are no longer at risk."""
        self.reports.extend(stats)
        for number in done:
            self.taken.get(worker, {}).pop(number, None)

    def collect(self) -> list[str]:
        reports, self.reports = self.reports, []
        return reports

    def give_back(self, worker: str) -> int:
        """A dead actor's unfinished groups go to the front of the queue; how many chunks."""
        groups = self.taken.pop(worker, {})
        chunks = [record for number in sorted(groups) for record in groups[number]]
        self.todo.extendleft(reversed(chunks))
        self.pids.pop(worker, None)
        return len(chunks)

    def worker_pids(self) -> dict[str, int]:
        return dict(self.pids)


class LabelActor:
    """One engine, streaming the chunks it pulls from the queue through the local runner's
    labeller and stream."""

    def __init__(
        self,
        config: JobConfig,
        engine_factory: EngineFactory,
        run_id: str,
        had_rows: frozenset[tuple[str, str]] | None = None,
    ) -> None:
        self.config = config
        prompts = JobPrompts.for_job(config)
        self.labeller = Labeller(config, engine_factory(), run_id, prompts, had_rows)

    def run(self, queue: Any, worker: str) -> None:
        import ray

        ray.get(queue.hello.remote(worker, os.getpid()))
        config, labeller = self.config, self.labeller
        stream = GroupStream(labeller, max_in_flight(config, labeller.engine))
        pending: list[str] = []
        with few_collections():
            for stats, payload in stream.run(self._groups(queue, worker)):
                pending.append(json.dumps(stats.to_dict()))
                if payload is not None:  # a group written whole
                    ray.get(queue.report.remote(worker, pending, [payload]))
                    pending = []
        ray.get(queue.report.remote(worker, pending, []))

    def _groups(self, queue: Any, worker: str) -> Iterator[tuple[list, int]]:
        import ray

        config = self.config
        while (taken := ray.get(queue.take.remote(worker))) is not None:
            number, records = taken
            chunks = []
            for record in records:
                source = config.inputs[int(record["file"])]
                columns = (config.id_column, config.text_column)
                chunk = read_chunk(source, *columns, config.chunk_size, int(record["index"]))
                chunk.policies = frozenset(str(record["policies"]).split(","))
                chunks.append(chunk)
            yield chunks, number


def run_label_job_ray(
    config: JobConfig,
    engine_factory: EngineFactory,
    replicas: int = 1,
    gpus_per_replica: float = 0,
    cpus_per_replica: float = 1,
    address: str | None = None,
    engine_description: dict[str, Any] | None = None,
) -> RunResult:
    """Label every input row under every policy with ``replicas`` engine actors on Ray."""
    config = dataclasses.replace(config, runner="ray")  # refuses what Ray cannot do (--sample)
    engine = {
        "engine": "ray",
        "replicas": replicas,
        "gpus_per_replica": gpus_per_replica,
        "address": address or "local",
        "replica_engine": engine_description or {},
    }
    LabelTable(config.output).ensure()
    prompts = JobPrompts.for_job(config)
    prompts.check_fits(config.max_model_len, config.sampling.max_tokens)
    recorder = RunRecorder(config, prompts, engine)
    with open_claims(config.output, recorder.run_id) as claims:
        index = Index(config.output)
        plans = plan_files(config, prompts, (LabelTable(config.output), index), claims)
        recorder.add(skipped_stats(plans, config, None))
        pool = _Pool(config, plans, recorder, engine_factory,
                     (replicas, gpus_per_replica, cpus_per_replica, address))  # fmt: skip
        pool.run()
        finish_files(plans, recorder.stats, config, prompts, (LabelTable(config.output), index))
    return recorder.finish()


def _cache_env() -> dict[str, Any]:
    """The run's ``--cache-dir`` for actors on a cluster that was started without it."""
    chosen = os.environ.get(CACHE_ENV)
    return {"runtime_env": {"env_vars": {CACHE_ENV: chosen}}} if chosen else {}


class _Pool:
    """The driver's side: start the actors, collect their counts, replace the dead ones."""

    def __init__(self, config, plans, recorder, engine_factory, resources) -> None:
        self.config, self.plans, self.recorder = config, plans, recorder
        self.engine_factory = engine_factory
        self.replicas, self.gpus, self.cpus, self.address = resources
        self.replaced = 0
        self._workers = 0

    def run(self) -> None:
        import ray

        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
        records = chunk_descriptors(self.config, self.plans)
        if not records:
            return
        policies = len(self.config.policies)
        per_group = max(1, self.config.batch_size // max(1, self.config.chunk_size * policies))
        queue_class = ray.remote(num_cpus=0)(ChunkQueue)
        name = f"safeguard-chunks-{self.recorder.run_id}"
        self.queue = queue_class.options(name=name).remote(records, per_group)
        self.actor_class = ray.remote(LabelActor).options(
            num_cpus=self.cpus, **({"num_gpus": self.gpus} if self.gpus else {}), **_cache_env()
        )
        self.had = frozenset(had_rows(self.plans))
        running = dict(self._start() for _ in range(min(self.replicas, len(records))))
        try:
            while running:
                finished, _ = ray.wait(list(running), num_returns=1, timeout=REPORT_SECONDS)
                self._collect()
                for ref in finished:
                    worker, _actor = running.pop(ref)
                    if self._died(ref, worker):
                        running.update([self._start()])
            self._collect()
        finally:
            ray.kill(self.queue)

    def _start(self) -> tuple[Any, tuple[str, Any]]:
        self._workers += 1
        worker = f"actor-{self._workers}"
        actor = self.actor_class.remote(self.config, self.engine_factory,
                                        self.recorder.run_id, self.had)  # fmt: skip
        return actor.run.remote(self.queue, worker), (worker, actor)

    def _died(self, ref: Any, worker: str) -> bool:
        """Whether the actor behind ``ref`` died (then its work went back to the queue);
        an error of the job itself (not of Ray) is raised as it is."""
        import ray
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

        try:
            ray.get(ref)
            return False
        except ray.exceptions.RayTaskError as exc:
            cause = exc.as_instanceof_cause()
            if isinstance(cause, SafeguardError):
                raise cause from None
            raise
        except (ActorDiedError, ActorUnavailableError, RayActorError) as exc:
            back = ray.get(self.queue.give_back.remote(worker))
            self.replaced += 1
            log.warning("%s died (%s): %d chunk(s) go to a new actor", worker,
                        type(exc).__name__, back)  # fmt: skip
            if self.replaced > MAX_REPLACEMENTS:
                raise RayRunError(
                    f"{self.replaced} actors died in this run; what they wrote is kept, "
                    "rerun to label the rest"
                ) from exc
            return True

    def _collect(self) -> None:
        import ray

        for report in ray.get(self.queue.collect.remote()):
            self.recorder.add(RunStats.from_dict(json.loads(report)))
