"""Run the labelling job on a Ray cluster: a Ray Data pipeline feeding a pool of engine actors.

Ray Data streams the job's chunks (file, chunk index) to ``--replicas`` actors, each holding
one engine (``--gpus-per-replica`` GPUs, for tensor parallelism). An actor reads its chunk's
rows straight from the shard (only the row groups it needs), then runs exactly the local
runner's flow on them: the same :class:`batch.flow.labeller.Labeller` and the same atomic chunk
writer. Chunk names, resume, skip and the output layout are therefore identical to a local
run; the driver keeps the run manifest (``RunRecorder``), merging the counts every actor
reports.

Chunks are cut from the files' metadata (their row counts), not from Ray Data's own Parquet
blocks, whose boundaries depend on the reader and would change a chunk's identity.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from batch.engine.base import Engine
from batch.flow.chunks import chunk_count, read_chunk
from batch.flow.collector import few_collections
from batch.flow.config import JobConfig
from batch.flow.labeller import Labeller
from batch.flow.prompts import JobPrompts
from batch.flow.stats import RunStats
from batch.output.claims import Claims
from batch.output.index import Index
from batch.output.table import LabelTable
from batch.runners.files import FilePlan, finish_files, had_rows, plan_files, skipped_stats
from batch.runners.run import RunRecorder, RunResult

EngineFactory = Callable[[], Engine]


def chunk_descriptors(config: JobConfig, plans: list[FilePlan]) -> list[dict[str, Any]]:
    """One record per chunk of every file to label, from the files' row counts."""
    return [
        {"file": number, "index": index, "policies": ",".join(sorted(plan.policies))}
        for number, plan in enumerate(plans)
        if plan.policies
        for index in range(chunk_count(plan.source, config.chunk_size))
    ]


class LabelActor:
    """One engine; labels the chunks Ray Data hands it with the local runner's Labeller."""

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

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        config = self.config
        chunks = []
        for number, index, policies in zip(
            batch["file"], batch["index"], batch["policies"], strict=True
        ):
            chunk = read_chunk(
                config.inputs[int(number)],
                config.id_column,
                config.text_column,
                config.chunk_size,
                int(index),
            )
            chunk.policies = frozenset(str(policies).split(","))
            chunks.append(chunk)
        with few_collections():
            stats = self.labeller.process(chunks)
        return {"stats": np.array([json.dumps(stats.to_dict())])}


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
    with Claims(config.output, recorder.run_id) as claims:
        index = Index(config.output)
        plans = plan_files(config, prompts, (LabelTable(config.output), index), claims)
        recorder.add(skipped_stats(plans, config, None))
        _run_actors(config, plans, recorder, (engine_factory, replicas, gpus_per_replica,
                                               cpus_per_replica, address))  # fmt: skip
        finish_files(plans, recorder.stats, config, prompts, (LabelTable(config.output), index))
    return recorder.finish()


def _run_actors(
    config: JobConfig, plans: list[FilePlan], recorder: RunRecorder, pool: tuple
) -> None:
    """Stream the chunks to the actor pool; merge each actor's counts as they come back."""
    import ray

    engine_factory, replicas, gpus_per_replica, cpus_per_replica, address = pool
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    records = chunk_descriptors(config, plans)
    if records:
        per_call = max(1, config.batch_size // max(1, config.chunk_size * len(config.policies)))
        dataset = ray.data.from_items(records, override_num_blocks=max(1, len(records) // per_call))
        results = dataset.map_batches(
            LabelActor,
            fn_constructor_kwargs={
                "config": config,
                "engine_factory": engine_factory,
                "run_id": recorder.run_id,
                "had_rows": frozenset(had_rows(plans)),
            },
            batch_size=per_call,
            compute=ray.data.ActorPoolStrategy(size=replicas),
            **({"num_gpus": gpus_per_replica} if gpus_per_replica else {}),
            num_cpus=cpus_per_replica,
        )
        for row in results.iter_rows():
            recorder.add(RunStats.from_dict(json.loads(row["stats"])))
