"""Run the labelling job on a Ray cluster: a Ray Data pipeline feeding a pool of engine actors.

Ray Data streams the job's chunks (file, chunk index) to ``--replicas`` actors, each holding
one engine (``--gpus-per-replica`` GPUs, for tensor parallelism). An actor reads its chunk's
rows straight from the shard (only the row groups it needs), then runs exactly the local
runner's stages on them: the same :class:`batch.pipeline.Labeller` (plan, label store,
dedup, render, generate, parse) and the same atomic chunk writer. Chunk names, resume, skip
and the output layout are therefore identical to a local run; the driver writes the run
manifest, merging the counts every actor reports.

Chunks are cut from the files' metadata (their row counts), not from Ray Data's own Parquet
blocks, whose boundaries depend on the reader and would change a chunk's identity.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from batch.engine.base import Engine
from batch.pipeline import (
    JobConfig,
    Labeller,
    PolicyStats,
    RunResult,
    RunStats,
    _manifest,
    new_run_id,
    read_chunk,
)
from batch.write import RUNS_DIR, remove_stale_temporaries, write_json_atomic

log = logging.getLogger(__name__)

EngineFactory = Callable[[], Engine]


def chunk_descriptors(config: JobConfig) -> list[dict[str, Any]]:
    """One record per chunk of every input file, from the files' row counts."""
    records = []
    for number, source in enumerate(config.inputs):
        chunks = (source.num_rows + config.chunk_size - 1) // config.chunk_size
        records += [{"file": number, "index": index} for index in range(chunks)]
    return records


def _stats_to_dict(stats: RunStats) -> dict[str, Any]:
    return {
        "rows": stats.rows,
        "requests": stats.requests,
        "prompt_tokens": stats.prompt_tokens,
        "cached_tokens": stats.cached_tokens,
        "completion_tokens": stats.completion_tokens,
        "generate_seconds": stats.generate_seconds,
        "files_written": stats.files_written,
        "status_counts": dict(stats.status_counts),
        "per_policy": {
            pid: {
                **{k: v for k, v in p.__dict__.items() if k != "status"},
                "status": dict(p.status),
            }  # fmt: skip
            for pid, p in stats.per_policy.items()
        },
    }


def _merge(total: RunStats, part: dict[str, Any]) -> None:
    for name in (
        "rows", "requests", "prompt_tokens", "cached_tokens", "completion_tokens",
        "generate_seconds", "files_written",
    ):  # fmt: skip
        setattr(total, name, getattr(total, name) + part[name])
    total.status_counts.update(part["status_counts"])
    for pid, counts in part["per_policy"].items():
        mine = total.per_policy.setdefault(pid, PolicyStats())
        for key, value in counts.items():
            if key == "status":
                mine.status.update(Counter(value))
            else:
                setattr(mine, key, getattr(mine, key) + value)


class LabelActor:
    """One engine and one Labeller; labels the chunks Ray Data hands it."""

    def __init__(self, config: JobConfig, engine_factory: EngineFactory, run_id: str) -> None:
        self.config = config
        self.engine = engine_factory()
        self.run_id = run_id

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        stats = RunStats()
        labeller = Labeller(self.config, self.engine, self.run_id, stats)
        config = self.config
        chunks = [
            read_chunk(
                config.inputs[int(number)],
                config.id_column,
                config.text_column,
                config.chunk_size,
                int(index),
            )
            for number, index in zip(batch["file"], batch["index"], strict=True)
        ]
        labeller.process(chunks)
        import json

        return {"stats": np.array([json.dumps(_stats_to_dict(stats))])}


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
    import json

    import ray

    if config.sample is not None:
        raise ValueError("--sample is not supported with --runner ray; sample on one machine")
    started = datetime.now(timezone.utc)
    run_id = new_run_id(started)
    stats = RunStats()
    remove_stale_temporaries(config.output)
    manifest_path = Path(config.output) / RUNS_DIR / f"{run_id}.json"

    class _Described:  # the manifest's engine entry, without an engine in the driver
        name = "ray"

        def describe(self) -> dict[str, Any]:
            return {
                "engine": "ray",
                "replicas": replicas,
                "gpus_per_replica": gpus_per_replica,
                "address": address or "local",
                "replica_engine": engine_description or {},
            }

    described = _Described()
    labeller_for_manifest = Labeller(config, described, run_id, stats)  # prefixes only

    def save(finished: datetime | None = None) -> dict[str, Any]:
        manifest = _manifest(
            config, described, run_id, labeller_for_manifest, stats, started, finished
        )
        manifest["runner"] = "ray"
        write_json_atomic(manifest_path, manifest)
        return manifest

    save()
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    records = chunk_descriptors(config)
    if records:
        per_call = max(1, config.batch_requests // max(1, config.chunk_size * len(config.policies)))
        dataset = ray.data.from_items(records, override_num_blocks=max(1, len(records) // per_call))
        results = dataset.map_batches(
            LabelActor,
            fn_constructor_kwargs={
                "config": config,
                "engine_factory": engine_factory,
                "run_id": run_id,
            },
            batch_size=per_call,
            compute=ray.data.ActorPoolStrategy(size=replicas),
            **({"num_gpus": gpus_per_replica} if gpus_per_replica else {}),
            num_cpus=cpus_per_replica,
        )
        last = time.monotonic()
        for row in results.iter_rows():
            _merge(stats, json.loads(row["stats"]))
            if time.monotonic() - last > 30:
                save()
                last = time.monotonic()
    manifest = save(datetime.now(timezone.utc))
    return RunResult(run_id, manifest_path, manifest)
