"""The flow for a group of chunks: plan, decide, generate, parse, write, count.

Each stage is a function in its own module; the labeller only sequences them: ``prepare``
plans a group (requests grouped by policy for the prefix cache), the engine answers its
requests (``flow.stream`` keeps many groups in the engine at once), and ``commit`` parses the
answers of the decisions that are ready, in any groups, and writes them as one upsert.
``process`` does all of it for one group, in one engine call.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timezone

from batch.engine.base import Engine, generate
from batch.flow.answers import parse_answers
from batch.flow.chunks import Chunk
from batch.flow.config import JobConfig
from batch.flow.decide import Candidate, carry_over, planner_decisions
from batch.flow.dedup import group_requests
from batch.flow.plan import PlannedItem, plan_policy
from batch.flow.prepared import HoldKey, PreparedGroup
from batch.flow.prompts import JobPrompts
from batch.flow.route import route
from batch.flow.rows import OutputRows, build_rows
from batch.flow.score import score_tokens
from batch.flow.stats import RunStats, count_decisions, count_tasks
from batch.flow.todo import ChunkTask, current_rows, pending_task
from batch.flow.write import write_rows
from batch.output.index import Index
from batch.output.store import LabelStore
from batch.output.table import LabelTable


class Labeller:
    """Runs groups of chunks through the engine; holds only what a whole run shares."""

    def __init__(
        self,
        config: JobConfig,
        engine: Engine,
        run_id: str,
        prompts: JobPrompts | None = None,
        had_rows: Collection[tuple[str, str]] | None = None,
    ) -> None:
        """``had_rows``: the (source file, policy) pairs the table held rows of when the run
        planned its files; only those are read back. None: every pair the index knows."""
        self.config = config
        self.engine = engine
        self.run_id = run_id
        self.prompts = prompts or JobPrompts.for_job(config)
        self.table = LabelTable(config.output)
        self.index = Index(config.output)
        self.store = LabelStore(self.index, self.table)
        self.had_rows = had_rows

    def close(self) -> None:
        """Close the index (its write-ahead log folded in) and the label store's file."""
        self.store.pointers.close()
        self.index.close()

    def _had_rows(self, source_file: str, policy_id: str) -> bool:
        if self.had_rows is None:
            return self.index.progress(source_file, policy_id) is not None
        return (source_file, policy_id) in self.had_rows

    def process(self, chunks: Sequence[Chunk]) -> RunStats:
        """Label a group of chunks under every policy; one engine call, one commit."""
        group = self.prepare(chunks)
        started = time.perf_counter()
        results = generate(self.engine, group.requests(), self.config.sampling)
        for index, result in enumerate(results):
            group.answer(index, result)
        group.generate_seconds = time.perf_counter() - started
        stats = self.commit([(group, group.take_ready())])
        stats.merge(self.group_stats(group))
        stats.generate_seconds = group.generate_seconds
        return stats

    def prepare(
        self, chunks: Sequence[Chunk], open_work: Mapping[HoldKey, int] | None = None
    ) -> PreparedGroup:
        """Plan a group: every (row, policy) decided but those the engine must answer.

        ``open_work`` names the work earlier open groups have asked for: identical candidates
        here are held for their labels instead of being asked twice.
        """
        config, prompts = self.config, self.prompts
        current = current_rows(self.table, chunks, config.policies, self._had_rows)
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
        held, waits = [], set()
        if open_work and config.reuse and not config.force:
            open_items, held = self._split_held(open_items, todo, open_work, waits)
        asked, leaders = group_requests(open_items, todo, config.combined)
        decisions = decided + prefiltered + asked
        scored = score_tokens() if config.scores and not config.combined else ()
        return PreparedGroup(
            chunks, tasks, todo, decisions, leaders, held=held, waits_for=waits, score_tokens=scored
        )

    def hold_keys(self, group: PreparedGroup, start: int = 0) -> list[HoldKey]:
        """The work a group asks the engine for (its requests from ``start`` on)."""
        keys = [task.policy.id for task in group.todo]
        return [
            (keys[d.task], d.item.content_sha256)
            for d in group.decisions
            if d.group is not None and d.group >= start
        ]

    def take_held(self, group: PreparedGroup) -> int:
        """Give held candidates the labels their earlier groups committed; those without one
        become requests of this group. Returns the index of the first new request."""
        start = len(group.leaders)
        if not group.held:
            return start
        store, run_id = self.store, self.run_id
        reused, still_open = carry_over(group.held, group.todo, store, self.prompts, run_id)
        asked, leaders = group_requests(still_open, group.todo, self.config.combined)
        shifted = [replace(d, group=d.group + start) if d.group is not None else d for d in asked]
        group.resolve_held(reused + shifted, leaders)
        return start

    def commit(self, parts: Sequence[tuple[PreparedGroup, Sequence[int]]]) -> RunStats:
        """Parse the answers some decisions of some groups wait on (each request once: its
        decisions are ready together), write their rows as one upsert, count what they did."""
        config, prompts = self.config, self.prompts
        labelled_at = datetime.now(timezone.utc)
        stats, rows, chunks = RunStats(), OutputRows(), {}
        for group, numbers in parts:
            decisions = [group.decisions[n] for n in numbers]
            needed = sorted({d.group for d in decisions if d.group is not None})
            results: list = list(group.results)
            for index in needed:
                results[index] = results[index] if results[index] is not None else "no completion"
            verdicts: list = [None] * len(group.leaders)
            asked = ([group.leaders[i] for i in needed], [results[i] for i in needed])
            parsed = parse_answers(*asked, group.todo, config.policies, config.combined)
            for index, verdict in zip(needed, parsed, strict=True):
                verdicts[index] = verdict
            mine = build_rows(group.todo, decisions, group.leaders, results, verdicts, config,
                              prompts, self.run_id, labelled_at)  # fmt: skip
            stats.merge(count_decisions(config.max_attempts, group.todo, (decisions, mine), asked))
            rows.extend(mine)
            for decision in decisions:
                chunk = group.todo[decision.task].chunk
                chunks.setdefault(id(chunk), chunk)
        output = (self.table, self.index, self.store)
        version = write_rows(rows, list(chunks.values()), output, prompts, config, self.run_id)
        stats.versions = [] if version is None else [version]
        stats.commits = int(version is not None)  # one upsert, however many groups
        return stats

    def group_stats(self, group: PreparedGroup) -> RunStats:
        """A group's own counts (rows asked, rows kept as they were), once it is done."""
        policy_ids = [p.id for p in self.config.policies]
        return count_tasks(policy_ids, group.rows, group.tasks)

    def _split_held(
        self,
        candidates: list[Candidate],
        todo: Sequence[ChunkTask],
        open_work: Mapping[HoldKey, int],
        waits_for: set[int],
    ) -> tuple[list[Candidate], list[Candidate]]:
        """Candidates to ask, and those whose identical work an open group already asked."""
        keys = [task.policy.id for task in todo]
        ask, held = [], []
        for candidate in candidates:
            key = (keys[candidate.task], candidate.item.content_sha256)
            owner = open_work.get(key)
            if owner is None:
                ask.append(candidate)
            else:
                held.append(candidate)
                waits_for.add(owner)
        return ask, held

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
