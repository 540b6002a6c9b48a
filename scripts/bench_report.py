"""The HTML report on a big output: time and peak memory, against reading the table whole.

    python scripts/bench_report.py [--rows 1000000] [--runs 30] [--dir /tmp/bench-report]
                                   [--json PATH] [--smoke]

Writes a synthetic output (two policies, ``--rows`` labels in all with rationales and
reasoning of realistic length, spread over ``--runs`` nightly runs with their manifests),
then, each in a fresh process: builds the report page, and (the baseline) reads the table's
current version whole with polars. Prints both and their ratios, and JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from batch.output.schema import OUTPUT_SCHEMA  # noqa: E402

BATCH = 100_000
VOCABULARY = (
    "the message offers a prize and asks reader to call premium number unsolicited spam policy "
    "section says content user appears legitimate promotion link account free win cash claim "
    "reply stop friend meeting later tonight sorry running late"
)
WORDS = np.array(VOCABULARY.split())


def _texts(rng, n: int, words: int) -> list[str]:
    """Texts of ``words`` random words, so they compress like real rationales (not to
    nothing, as one repeated string would)."""
    picks = WORDS[rng.integers(0, len(WORDS), size=(n, words))]
    return [" ".join(row) for row in picks]


def _batch(policy: str, start: int, n: int, runs: list[str], rng) -> pa.Table:
    rows = np.arange(start, start + n)
    status = rng.choice(["ok", "ok", "ok", "ok", "parse_error", "empty_input"], n)
    violation = rng.random(n) < 0.13
    columns = {
        "id": pa.array(rows.astype(str)),
        "source_file": pa.array([f"night-{r // 50_000:03d}.parquet" for r in rows]),
        "source_row": pa.array(rows % 50_000),
        "source_path": pa.array([f"/data/night-{r // 50_000:03d}.parquet" for r in rows]),
        "policy_id": pa.array([policy] * n),
        "status": pa.array(status),
        "violation": pa.array(np.where(status == "ok", violation, False)),
        "label": pa.array(np.where(violation, "1", "0")),
        "origin": pa.array(rng.choice(["model", "model", "duplicate", "reused"], n)),
        "run_id": pa.array([runs[min(len(runs) - 1, r * len(runs) // (2 * n))] for r in rows]),
        "rationale": pa.array(_texts(rng, n, 12)),
        "reasoning": pa.array(_texts(rng, n, 60)),
    }
    fixed = {"source_fingerprint": "f" * 64, "policy_version": "1", "policy_sha256": "a" * 64,
             "prompt_sha256": "b" * 64, "model": "gpt-oss-safeguard-20b",
             "model_fingerprint": "c" * 64, "settings_sha256": "d" * 64,
             "reasoning_effort": "low", "decided_by": "model"}  # fmt: skip
    table = []
    for field in OUTPUT_SCHEMA:
        if field.name in columns:
            table.append(columns[field.name].cast(field.type))
        elif field.name in fixed:
            table.append(pa.array([fixed[field.name]] * n, field.type))
        elif field.name in ("temperature", "top_p"):
            table.append(pa.array([1.0] * n, field.type))
        elif field.name in ("max_tokens", "attempt"):
            table.append(pa.array([1] * n, field.type))
        elif field.name == "labelled_at":
            table.append(pa.array([1_790_000_000_000_000] * n, pa.int64()).cast(field.type))
        else:
            table.append(pa.nulls(n, field.type))
    return pa.Table.from_arrays(table, schema=OUTPUT_SCHEMA)


def write_output(out: Path, rows: int, runs: int) -> float:
    from deltalake import write_deltalake

    started = time.perf_counter()
    shutil.rmtree(out, ignore_errors=True)
    run_ids = [f"2026{11 if n < 30 else 12}{n % 30 + 1:02d}T010000Z-{n:08x}" for n in range(runs)]
    rng = np.random.default_rng(0)
    for policy in ("spam", "harassment"):
        for start in range(0, rows // 2, BATCH):
            batch = _batch(policy, start, min(BATCH, rows // 2 - start), run_ids, rng)
            write_deltalake(str(out), batch, mode="append", partition_by=["policy_id"])
    (out / "_runs").mkdir()
    for n, run_id in enumerate(run_ids):
        manifest = {"run_id": run_id, "state": "finished", "started_at": run_id[:8],
                    "command": ["safeguard-batch", "label"], "model": "gpt-oss-safeguard-20b",
                    "counts": {"rows": rows // runs, "labelled": rows // runs,
                               "requests_sent": rows // runs, "reused": 0},
                    "tokens": {"prompt": 900 * rows // runs, "completion": 60 * rows // runs,
                               "prefix_cache_hit_rate": 0.9},
                    "timing": {"wall_seconds": 3600.0, "generate_seconds": 3500.0 + n,
                               "items_per_second": rows / runs / 3600},
                    "engine": {"engine": "vllm", "build": "vllm",
                               "config": {"tensor_parallel_size": 1}}}  # fmt: skip
        (out / "_runs" / f"{run_id}.json").write_text(json.dumps(manifest))
    return time.perf_counter() - started


MEASURE = """
import json, sys, time
sys.path.insert(0, sys.argv[3])
started = time.perf_counter()
if sys.argv[1] == "report":
    from batch.reports.html.page import write_report
    write_report(sys.argv[2], sys.argv[2] + "/_report.html")
else:
    import polars as pl
    frame = pl.read_delta(sys.argv[2])
    assert frame.height > 0
elapsed = time.perf_counter() - started
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"seconds": elapsed, "peak_rss_mib": peak / 1024}))
"""


def measure(kind: str, out: Path) -> dict[str, float]:
    """One measurement in a fresh process (VmHWM: this process's own peak, not a parent's)."""
    done = subprocess.run([sys.executable, "-c", MEASURE, kind, str(out), str(ROOT)],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/bench-report"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, in seconds (tests)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rows, args.runs = 2_000, 3
    build = write_output(args.dir, args.rows, args.runs)
    report, baseline = measure("report", args.dir), measure("read", args.dir)
    page = (args.dir / "_report.html").stat().st_size
    result = {
        "rows": args.rows, "runs": args.runs, "build_seconds": round(build, 1),
        "report": report, "read_whole_table": baseline, "page_bytes": page,
        "time_ratio_report_to_read": report["seconds"] / baseline["seconds"],
        "rss_ratio_report_to_read": report["peak_rss_mib"] / baseline["peak_rss_mib"],
    }  # fmt: skip
    print(f"{args.rows:,} labels, {args.runs} runs (written in {build:.0f} s)")
    print(f"report:            {report['seconds']:6.2f} s  peak {report['peak_rss_mib']:7.0f} MiB"
          f"  page {page / 1024:,.0f} KiB")  # fmt: skip
    print(f"read whole table:  {baseline['seconds']:6.2f} s  peak "
          f"{baseline['peak_rss_mib']:7.0f} MiB")  # fmt: skip
    print(f"ratio report/read: time {result['time_ratio_report_to_read']:.2f}x, "
          f"peak RSS {result['rss_ratio_report_to_read']:.2f}x")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
