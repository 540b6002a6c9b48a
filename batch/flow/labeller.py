"""The flow for a group of chunks: plan, decide, generate, parse, write (one commit), count.

Each stage is a function in its own module; the labeller only sequences them, so one group
of chunks costs one engine call, with requests grouped by policy for the prefix cache, and
one commit to the output table.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timezone

from batch.engine.base import Engine
from batch.flow.answers import parse_answers
from batch.flow.chunks import Chunk
from batch.flow.config import JobConfig
from batch.flow.decide import carry_over, planner_decisions
from batch.flow.dedup import group_requests, requests_for
from batch.flow.generate import generate_with_retries
from batch.flow.plan import PlannedItem, plan_policy
from batch.flow.prompts import JobPrompts
from batch.flow.route import route
from batch.flow.rows import build_rows
from batch.flow.stats import RunStats, count_group
from batch.flow.todo import ChunkTask, current_rows, pending_task
from batch.flow.write import write_rows
from batch.output.index import Index
from batch.output.store import LabelStore
from batch.output.table import LabelTable


class Labeller:
    """Runs groups of chunks through the engine; holds only what a whole run shares."""

    def __init__(
        self, config: JobConfig, engine: Engine, run_id: str, prompts: JobPrompts | None = None
    ) -> None:
        self.config = config
        self.engine = engine
        self.run_id = run_id
        self.prompts = prompts or JobPrompts.for_job(config)
        self.table = LabelTable(config.output)
        self.index = Index(config.output)
        self.store = LabelStore(self.index)

    def process(self, chunks: Sequence[Chunk]) -> RunStats:
        """Label a group of chunks under every policy; one engine call, one commit."""
        config, prompts = self.config, self.prompts
        current = current_rows(self.table, self.index, chunks, config.policies)
        tasks = [  # policy-major: requests that share a prefix run together
            pending_task(
                chunk,
                policy,
                prompts,
                config,
                current.get((chunk.source.source_file, policy.id), {}),
            )
            for policy in config.policies
            for chunk in chunks
        ]
        todo = [task for task in tasks if task.rows]
        decided, open_items = planner_decisions([self._plan(task) for task in todo])
        if config.reuse and not config.force:
            reused, open_items = carry_over(open_items, todo, self.store, prompts, self.run_id)
            decided += reused
        prefiltered, open_items = route(open_items, todo, config.prefilters, config.audit_rate)
        asked, leaders = group_requests(open_items, todo, config.combined)
        decisions = decided + prefiltered + asked
        started = time.perf_counter()
        results = generate_with_retries(self.engine, requests_for(leaders), config.sampling)
        seconds = time.perf_counter() - started
        verdicts = parse_answers(leaders, results, todo, config.policies, config.combined)
        labelled_at = datetime.now(timezone.utc)
        rows = build_rows(
            todo, decisions, leaders, results, verdicts, config, prompts, self.run_id, labelled_at
        )
        output = (self.table, self.index, self.store)
        version = write_rows(todo, decisions, rows, chunks, output, prompts, config, self.run_id)
        stats = count_group(
            [p.id for p in config.policies],
            config.max_attempts,
            sum(chunk.size for chunk in chunks),
            (tasks, todo),
            (decisions, rows),
            (leaders, results),
        )
        stats.generate_seconds = seconds
        stats.versions = [] if version is None else [version]
        return stats

    def _plan(self, task: ChunkTask) -> list[PlannedItem]:
        """Prompts and seeds for a task's rows, or the status they get without the model."""
        policy, prompts = task.policy, self.prompts
        return plan_policy(
            task.chunk.texts,
            task.chunk.hashes,
            prompts.prefixes[policy.id],
            prompts.seed_sha256(policy),
            prompts.model_fingerprint,
            prompts.settings,
            self.config.sampling.max_tokens,
            self.config.max_model_len,
            task.rows,
        )
