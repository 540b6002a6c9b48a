"""Does a night's cost grow with history? A labelled history of N rows, then a night of new rows.

    python scripts/bench_scale.py [--history 1000000 10000000] [--night 10000] [--json PATH]

For each N: a synthetic history of N labels under the spam policy is written straight into an
output table (no engine: bulk appends of ``--commit-rows`` rows, with the index's label store
and completeness marks filled as a run would leave them), its commits and log size are
reported, and it is compacted (``safeguard-batch compact``). Then the same night (one new
shard of ``--night`` distinct messages, labelled through the scripted engine, which answers
at once) runs in a fresh process twice: into an empty output, and into the history. Wall time
and peak RSS of the two nights are compared: the targets are ratios of at most 1.5 and 1.2.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from scripted_runs import disk_bytes, peak_rss_mib  # noqa: E402

POLICY = ROOT / "policies" / "spam.md"
ROWS_PER_FILE = 1000


def job(inputs, output: Path):
    """The night's configuration; the history is written under the same work key."""
    from batch.engine.base import SamplingSettings
    from batch.flow.config import JobConfig
    from batch.policy.files import load_policies

    return JobConfig(
        inputs=inputs,
        policies=load_policies([POLICY]),
        output=str(output),
        model="bench",
        model_fingerprint="b" * 64,
        sampling=SamplingSettings(temperature=1.0, top_p=1.0, max_tokens=256),
        max_model_len=8192,
        command=["bench_scale"],
    )


def history_batch(start: int, count: int, prompts, config, run_id: str):
    """``count`` labelled rows, as a run would have written them."""
    import pyarrow as pa

    from batch.output.schema import OUTPUT_SCHEMA

    policy = config.policies[0]
    key = prompts.work_key(policy)
    numbers = range(start, start + count)
    digests = [hashlib.sha256(f"history message {i}".encode()).hexdigest() for i in numbers]
    files = [f"date=2025-{1 + (i // ROWS_PER_FILE) % 12:02d}/part-{i // ROWS_PER_FILE:06d}.parquet"
             for i in numbers]  # fmt: skip
    labels = ["1" if i % 7 == 0 else "0" for i in numbers]
    when = datetime(2025, 6, 1, tzinfo=timezone.utc)
    columns = {
        "id": [f"h{i}" for i in numbers],
        "source_file": files,
        "source_row": [i % ROWS_PER_FILE for i in numbers],
        "source_path": ["/data/content/" + f for f in files],
        "source_fingerprint": ["f" * 64] * count,
        "policy_id": [policy.id] * count,
        "policy_version": [policy.version] * count,
        "policy_sha256": [key.policy_sha256] * count,
        "prompt_sha256": [key.prompt_sha256] * count,
        "model": [config.model] * count,
        "model_fingerprint": [key.model_fingerprint] * count,
        "settings_sha256": [key.settings_sha256] * count,
        "route": [None] * count,
        "reasoning_effort": [config.reasoning_effort] * count,
        "temperature": [1.0] * count,
        "top_p": [1.0] * count,
        "max_tokens": [256] * count,
        "content_sha256": digests,
        "label": labels,
        "violation": [label == "1" for label in labels],
        "score": [0.9 if label == "1" else 0.1 for label in labels],
        "policy_category": [None] * count,
        "rationale": [None] * count,
        "reasoning": [f"The message {i} is ordinary chat, not promotion." for i in numbers],
        "status": ["ok"] * count,
        "error": [None] * count,
        "finish_reason": ["stop"] * count,
        "prompt_tokens": [640] * count,
        "completion_tokens": [40] * count,
        "seed": list(numbers),
        "attempt": [1] * count,
        "origin": ["model"] * count,
        "decided_by": ["model"] * count,
        "prefilter_score": [None] * count,
        "prefilter_audit": [None] * count,
        "reused_by_run_id": [None] * count,
        "run_id": [run_id] * count,
        "labelled_at": [when] * count,
    }
    return pa.table(columns, schema=OUTPUT_SCHEMA)


def build_history(output: Path, rows: int, commit_rows: int) -> dict:
    """Write ``rows`` labels into a fresh output, as earlier runs would have left it."""
    from batch.flow.prompts import JobPrompts
    from batch.flow.write import progress_work
    from batch.output import history
    from batch.output.index import Index, Mark
    from batch.output.store import LabelStore
    from batch.output.table import LabelTable

    config = job([], output)
    prompts = JobPrompts.for_job(config)
    policy = config.policies[0]
    table, index = LabelTable(output), Index(output)
    store = LabelStore(index)
    started = time.perf_counter()
    for number, start in enumerate(range(0, rows, commit_rows)):
        batch = history_batch(start, min(commit_rows, rows - start), prompts, config, f"h{number}")
        version = table.append(batch, {"run_id": f"history-{number}"})
        entries = zip(
            batch.column("content_sha256").to_pylist(),
            batch.column("source_file").to_pylist(),
            batch.column("source_row").to_pylist(),
            strict=True,
        )
        store.add(prompts.work_key(policy), entries, version)
        files = sorted(set(batch.column("source_file").to_pylist()))
        work = progress_work(policy, prompts, config)
        mark = Mark(version, index.epoch())
        index.record_progress(((f, policy.id, work, "f" * 64, True) for f in files), mark)
    index.set_meta("checked", history.now(table).to_text())  # as the runs would have left it
    store.filled()
    index.close()  # as a run's process does when it ends: the write-ahead log is folded in
    seconds = time.perf_counter() - started
    log = output / "_delta_log"
    return {
        "history_rows": rows,
        "history_seconds": round(seconds, 1),
        "commits": len(list(log.glob("*.json"))),
        "log_bytes": sum(p.stat().st_size for p in log.iterdir() if p.is_file()),
        "index_bytes": (index_bytes := disk_bytes(output / "_index")),
        "index_bytes_per_label": round(index_bytes / rows, 1),
        "files_before_compact": len(table.open().file_uris()),
    }


def night_shard(folder: Path, rows: int) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "part-0.parquet"
    texts = [f"tonight's message number {i}, never seen before" for i in range(rows)]
    pq.write_table(pa.table({"id": [f"n{i}" for i in range(rows)], "text": texts}), path)
    return path


def night(output: str, content: str) -> None:
    """One night, in this (fresh) process: print its wall time and peak RSS as JSON."""
    from batch.engine.scripted import ScriptedEngine
    from batch.flow.read import inspect_inputs
    from batch.flow.sources import resolve_sources
    from batch.output.index import Index
    from batch.runners.local import run_label_job

    started = time.perf_counter()
    sources = resolve_sources([content], str(Path(content).parent))
    inputs, _ = inspect_inputs(sources, "id", "text", index=Index.if_exists(output))
    result = run_label_job(job(inputs, Path(output)), ScriptedEngine(record=False))
    seconds = time.perf_counter() - started
    counts = result.manifest["counts"]
    print(
        json.dumps({"seconds": seconds, "rss_mib": peak_rss_mib(), "requests": counts["requests"]})
    )


def run_night(output: Path, content: Path) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--night-of", str(output), str(content)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(rows: int, night_rows: int, commit_rows: int, work: Path) -> dict:
    from batch.job.maintenance import compact

    history = work / f"history-{rows}"
    content = work / "content" / "date=2026-11-29"
    shard = night_shard(content, night_rows)
    empty = run_night(work / f"empty-{rows}", shard)
    figures = build_history(history, rows, commit_rows)
    started = time.perf_counter()
    report = compact(str(history), target_rows=1_000_000)
    figures["compact_seconds"] = round(time.perf_counter() - started, 1)
    figures["files_after_compact"] = report["files_after"]
    full = run_night(history, shard)
    assert full["requests"] == empty["requests"] == night_rows, (full, empty)
    figures.update(
        night_rows=night_rows,
        night_seconds=round(full["seconds"], 2),
        empty_night_seconds=round(empty["seconds"], 2),
        night_rss_mib=round(full["rss_mib"], 1),
        empty_night_rss_mib=round(empty["rss_mib"], 1),
    )
    figures["time_ratio"] = round(full["seconds"] / empty["seconds"], 3)
    figures["rss_ratio"] = round(full["rss_mib"] / empty["rss_mib"], 3)
    figures["files_target"] = rows // 500_000 + 10
    shutil.rmtree(history)
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--history", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--night", type=int, default=10_000)
    parser.add_argument("--commit-rows", type=int, default=500_000)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: tmp)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, in seconds (tests)")
    parser.add_argument("--night-of", nargs=2, metavar=("OUTPUT", "SHARD"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.history, args.night, args.commit_rows = [20_000], 500, 10_000
    os.environ.setdefault("TIKTOKEN_ENCODINGS_BASE", str(ROOT.parent / "shared" / "vocab"))
    if args.night_of:
        night(*args.night_of)
        return
    results = []
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)  # a scratch folder that is not there yet
    with tempfile.TemporaryDirectory(dir=args.work) as scratch:
        for rows in args.history:
            figures = measure(rows, args.night, args.commit_rows, Path(scratch))
            results.append(figures)
            print(json.dumps(figures), flush=True)
    print("\n| history rows | commits | log KiB | index bytes a label | files after compact "
          "(target) | night s (empty) | ratio | night RSS MiB (empty) | ratio |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for f in results:
        print(
            f"| {f['history_rows']:,} | {f['commits']} | {f['log_bytes'] / 1024:.0f} | "
            f"{f['index_bytes_per_label']} | "
            f"{f['files_after_compact']} (≤ {f['files_target']}) | {f['night_seconds']} "
            f"({f['empty_night_seconds']}) | {f['time_ratio']} | {f['night_rss_mib']} "
            f"({f['empty_night_rss_mib']}) | {f['rss_ratio']} |"
        )
        met = f["time_ratio"] <= 1.5 and f["rss_ratio"] <= 1.2
        met = met and f["files_after_compact"] <= f["files_target"]
        met = met and f["index_bytes_per_label"] <= 150
        print(f"targets {'met' if met else 'MISSED'} at {f['history_rows']:,} rows")
    if args.json:
        machine = {"platform": platform.platform(), "cpus": os.cpu_count()}
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=2))


if __name__ == "__main__":
    main()
