"""What every runner does around the flow: name the run, count, and keep its manifest current.

The manifest is written when the run starts, at most every ``MANIFEST_EVERY_SECONDS`` while
it goes on (so a killed run's manifest says how far it got) and when it finishes.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from batch.flow.config import JobConfig
from batch.flow.prompts import JobPrompts
from batch.flow.stats import RunStats
from batch.output.layout import manifest_path
from batch.output.place import is_remote
from batch.output.write import write_json_atomic
from batch.runners.manifest import build_manifest

MANIFEST_EVERY_SECONDS = 30.0


def new_run_id(now: datetime) -> str:
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}"


@dataclass
class RunResult:
    run_id: str
    manifest_path: Path | str  # a URI for a table on an object store
    manifest: dict[str, Any]


class RunRecorder:
    """One run's identity, its running counts and its manifest on disk."""

    def __init__(self, config: JobConfig, prompts: JobPrompts, engine: dict[str, Any]) -> None:
        self.config = config
        self.prompts = prompts
        self.engine = engine
        self.started = datetime.now(timezone.utc)
        self.run_id = new_run_id(self.started)
        self.stats = RunStats()
        path = manifest_path(config.output, self.run_id)
        self.path: Path | str = path if is_remote(path) else Path(path)
        self.save()
        self._saved_at = time.monotonic()

    def save(self, finished: datetime | None = None) -> dict[str, Any]:
        manifest = build_manifest(
            self.config, self.prompts, self.run_id, self.engine, self.stats, self.started, finished
        )
        write_json_atomic(self.path, manifest)
        return manifest

    def add(self, stats: RunStats) -> None:
        """Merge a group's counts; rewrite the manifest if the last write is old enough."""
        self.stats.merge(stats)
        if stats.versions and self.stats.first_commit_seconds is None:
            elapsed = datetime.now(timezone.utc) - self.started
            self.stats.first_commit_seconds = round(elapsed.total_seconds(), 3)
        if time.monotonic() - self._saved_at > MANIFEST_EVERY_SECONDS:
            self.save()
            self._saved_at = time.monotonic()

    def finish(self) -> RunResult:
        manifest = self.save(datetime.now(timezone.utc))
        return RunResult(self.run_id, self.path, manifest)


def summary_line(result: RunResult) -> str:
    """One line for the terminal: what the run did, how fast, and where its manifest is."""
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
            ("left_to_other_runs", "left to another live run"),
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
