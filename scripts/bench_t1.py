"""The production-shape phases of ``bench.py``: temperature 1.0, many batches, per-row seeds.

What users run is a night of many ``--batch-size`` batches sampled at temperature 1.0 with a
seed per row. Over the same requests (at least 10 batches) and the same engine this measures:

- the engine limit: one ``LLM.generate`` call over every request (no job, no tails between);
- the streaming job (this code): batches overlap in the engine, each commits when answered;
- the same job without per-request seeds (what seeds cost), and without the score's
  log-probabilities (what the score costs);
- the batched job as it was before (one engine call per batch, each waiting for its slowest
  request: the path Ray actors still take), for the before/after table;
- whether a row rerun alone reproduces what it got inside the big batch (seeds' promise).

For each job phase: wall time, time to the first commit, the engine's idle fraction (wall time
outside engine steps) and peak RSS (VmHWM, reset before the phase).
"""

from __future__ import annotations

import contextlib
import random
import time
from pathlib import Path
from typing import Any

from scripted_runs import peak_rss_mib

RSS_RESET = Path("/proc/self/clear_refs")


def reset_peak_rss() -> None:
    with contextlib.suppress(OSError):
        RSS_RESET.write_text("5")  # Linux: reset VmHWM to the current RSS


class SequentialGroups:
    """The job before streaming: each group is one engine call, committed, then the next."""

    def __init__(self, labeller, max_in_flight: int, on_rows=None) -> None:
        self.labeller, self.on_rows = labeller, on_rows or (lambda rows: None)

    def run(self, groups):
        for chunks, payload in groups:
            stats = self.labeller.process(chunks)
            self.on_rows(sum(chunk.size for chunk in chunks))
            yield stats, payload


def run_job(
    engine, config_for, name: str, *, seeded: bool = True, batched: bool = False, scores=True
):
    """One job phase on a fresh output; the engine's busy time is its steps' time."""
    import batch.runners.local as local
    from batch.runners.local import run_label_job

    engine._llm.reset_prefix_cache()
    config = config_for(name)
    config.scores = scores
    original_params, original_stream = engine.sampling_params, local.GroupStream
    if not seeded:
        engine.sampling_params = lambda seed, sampling, scored=False: original_params(
            None, sampling, scored
        )
    if batched:
        local.GroupStream = SequentialGroups
    reset_peak_rss()
    busy = engine.step_seconds
    started = time.perf_counter()
    try:
        result = run_label_job(config, engine)
    finally:
        engine.sampling_params, local.GroupStream = original_params, original_stream
    wall = time.perf_counter() - started
    manifest = result.manifest
    first = manifest["timing"]["first_commit_seconds"]
    return {
        "seconds": wall,
        "requests": manifest["counts"]["requests"],
        "commits": manifest["counts"]["commits"],
        "first_chunk_seconds": first,
        "first_chunk_fraction": first / wall if first else None,
        "engine_idle_fraction": max(0.0, 1 - (engine.step_seconds - busy) / wall),
        "tokens_per_second": (manifest["tokens"]["prompt"] + manifest["tokens"]["completion"])
        / wall,
        "prefix_cache_hit_rate": manifest["tokens"]["prefix_cache_hit_rate"],
        "peak_rss_mib": peak_rss_mib(),
        "status": {k: v for k, v in manifest["counts"]["status"].items() if v},
    }


def engine_call(engine, requests, sampling) -> tuple[dict[str, Any], list]:
    """One ``LLM.generate`` call over every request: the limit, and the in-batch outputs."""
    prompts, params = engine.vllm_inputs(requests, sampling)
    engine._llm.reset_prefix_cache()
    reset_peak_rss()
    started = time.perf_counter()
    outputs = engine._llm.generate(prompts, params, use_tqdm=False)
    seconds = time.perf_counter() - started
    tokens = sum(len(p["prompt_token_ids"]) for p in prompts)
    tokens += sum(len(o.outputs[0].token_ids) for o in outputs)
    phase = {
        "seconds": seconds,
        "requests": len(requests),
        "engine_idle_fraction": 0.0,
        "tokens_per_second": tokens / seconds,
        "peak_rss_mib": peak_rss_mib(),
    }
    return phase, [list(o.outputs[0].token_ids) for o in outputs]


def rerun_alone(engine, requests, in_batch: list, sampling, count: int) -> dict[str, Any]:
    """Rows rerun one at a time with their seeds: do they reproduce their in-batch output?"""
    from batch.engine.base import generate

    picked = random.Random(0).sample(range(len(requests)), min(count, len(requests)))
    same = 0
    for index in picked:
        alone = generate(engine, [requests[index]], sampling)[0]
        same += not isinstance(alone, str) and list(alone.token_ids) == in_batch[index]
    return {"rows": len(picked), "identical": same, "fraction": same / len(picked)}


def t1_phases(engine, requests, config_for, args) -> dict[str, Any]:
    """Every production-shape phase over the same seeded requests at temperature 1.0."""
    import sys

    from batch.engine.base import SamplingSettings

    sampling = SamplingSettings(1.0, 1.0, args.max_tokens)
    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    say(f"t1 1/6 engine limit, one call over {len(requests)} requests...")
    limit, in_batch = engine_call(engine, requests, sampling)
    say("t1 2/6 streaming job, seeded, scored (the defaults)...")
    streaming = run_job(engine, config_for, "stream-seeded")
    say("t1 3/6 streaming job, unseeded...")
    unseeded = run_job(engine, config_for, "stream-unseeded", seeded=False)
    say("t1 4/6 streaming job without scores...")
    unscored = run_job(engine, config_for, "stream-unscored", scores=False)
    say("t1 5/6 batched job (one engine call per batch, as before)...")
    batched = run_job(engine, config_for, "batched", batched=True)
    say("t1 6/6 rows rerun alone...")
    alone = rerun_alone(engine, requests, in_batch, sampling, args.rerun_rows)
    return {
        "engine_limit": limit,
        "streaming_job": streaming,
        "streaming_job_unseeded": unseeded,
        "streaming_job_unscored": unscored,
        "batched_job": batched,
        "rerun_alone": alone,
        "ratio_job_to_engine_t1": limit["seconds"] / streaming["seconds"],
        "ratio_batched_job_to_engine_t1": limit["seconds"] / batched["seconds"],
        "ratio_seeded_to_unseeded": unseeded["seconds"] / streaming["seconds"],
        "ratio_scored_to_unscored": unscored["seconds"] / streaming["seconds"],
        "first_chunk_seconds": streaming["first_chunk_seconds"],
    }


def t1_table(t1: dict[str, Any], batches: int, batch_size: int) -> str:
    """The phases as a Markdown table."""
    rows = [
        ("engine limit (1 generate call)", t1["engine_limit"], "1.00 (baseline)"),
        ("streaming job, seeded, scored (this code)", t1["streaming_job"],
         f"{t1['ratio_job_to_engine_t1']:.2f} of engine speed"),
        ("streaming job, unseeded", t1["streaming_job_unseeded"],
         f"seeded is {t1['ratio_seeded_to_unseeded']:.2f}x its speed"),
        ("streaming job, no scores", t1["streaming_job_unscored"],
         f"scored is {t1['ratio_scored_to_unscored']:.2f}x its speed"),
        ("batched job, 1 call per batch (before)", t1["batched_job"],
         f"{t1['ratio_batched_job_to_engine_t1']:.2f} of engine speed"),
    ]  # fmt: skip
    lines = [
        f"temperature 1.0, {batches} batches of {batch_size} requests",
        "",
        "| phase | wall s | tokens/s | first commit s (share of wall) | engine idle | "
        "peak RSS MiB | ratio |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, phase, ratio in rows:
        first = phase.get("first_chunk_seconds")
        share = f"{first:.1f} ({phase['first_chunk_fraction']:.1%})" if first else "-"
        lines.append(
            f"| {name} | {phase['seconds']:.1f} | {phase['tokens_per_second']:,.0f} | {share} | "
            f"{phase['engine_idle_fraction']:.1%} | {phase['peak_rss_mib'] or 0:.0f} | {ratio} |"
        )
    alone = t1["rerun_alone"]
    lines.append(
        f"\nrows rerun alone with their seeds: {alone['identical']} of {alone['rows']} "
        "reproduced their in-batch output token for token"
    )
    return "\n".join(lines)
