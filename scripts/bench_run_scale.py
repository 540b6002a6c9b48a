"""Does a run's own cost grow with its size? One big run against the same job on 10,000 rows.

    python scripts/bench_run_scale.py --rows N --files F [--json PATH] [--kill] [--smoke]

The scripted engine answers every request at once (the two demo policies, each in its own
format), so only the job's own costs show: reading, planning, rendering, parsing, commits,
the index. N distinct short texts are written into F equal Parquet files (row groups of
100,000 rows), then, each in a fresh process pinned to one core:

1. the baseline: the same job on one file of ``--baseline-rows`` rows (default 10,000);
2. the run itself: ``rows``, ``files``, ``seconds``, ``labels_per_second``, ``peak_rss_mib``
   (VmHWM), ``first_commit_seconds``, ``index_bytes_per_label``, ``commits``;
3. a resume: the same command again on the same output (it must send 0 requests);
4. ``verify`` of the output against the inputs (every row present);
5. with ``--kill``: the run again into a new output, SIGKILLed halfway through its time, then
   rerun to completion; the current table must hold exactly rows x policies rows, once each.

Ratios are against the baseline measured in the same invocation. ``--smoke`` runs every step
at tiny sizes in seconds (the test suite runs it, so the benchmark cannot rot).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from scripted_runs import (  # noqa: E402
    POLICY_FILES,
    cpu_name,
    disk_bytes,
    peak_rss_mib,
    pin_one_core,
    policy_responder,
    write_inputs,
)

TARGETS = {"speed": 0.9, "rss": 1.2, "labels_per_second": 10_000, "resume_share": 0.05,
           "index_bytes_per_label": 150}  # fmt: skip


def job_config(inputs: Path, output: Path):
    from batch.engine.base import SamplingSettings
    from batch.flow.config import JobConfig
    from batch.flow.read import inspect_inputs
    from batch.flow.sources import resolve_sources
    from batch.output.index import Index
    from batch.policy.files import load_policies

    sources = resolve_sources([str(inputs)])
    files, _ = inspect_inputs(sources, "id", "text", index=Index.if_exists(output))
    return JobConfig(
        inputs=files,
        policies=load_policies(POLICY_FILES),
        output=str(output),
        model="scripted",
        model_fingerprint="0" * 64,
        sampling=SamplingSettings(1.0, 1.0, 1024),
        max_model_len=8192,
        command=["bench_run_scale"],
    )


def child_run(inputs: Path, output: Path) -> dict:
    """One labelling run in this process, pinned to one core."""
    from batch.engine.scripted import ScriptedEngine
    from batch.output.place import local_folder
    from batch.runners.local import run_label_job

    core = pin_one_core()
    started = time.perf_counter()
    config = job_config(inputs, output)
    engine = ScriptedEngine(policy_responder(config.policies), record=False)
    manifest = run_label_job(config, engine).manifest
    seconds = time.perf_counter() - started
    counts = manifest["counts"]
    index = disk_bytes(local_folder(output) / "_index")  # on a store: its local cache
    return {
        "seconds": round(seconds, 3),
        "labels": counts["labelled"],
        "labels_per_second": round(counts["labelled"] / seconds, 1),
        "requests": counts["requests"],
        "kept": counts["kept"],
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "first_commit_seconds": manifest["timing"]["first_commit_seconds"],
        "commits": counts["commits"],
        "index_bytes": index,
        "core": core,
    }


def child_verify(inputs: Path, output: Path) -> dict:
    from batch.reports.verify import verify

    pin_one_core()
    started = time.perf_counter()
    config = job_config(inputs, output)
    report = verify(str(output), config.inputs, config.policies)
    return {
        "seconds": round(time.perf_counter() - started, 3),
        "complete": report["complete"],
        "present": sum(p["present"] for p in report["policies"]),
        "missing": sum(p["missing"] for p in report["policies"]),
        "duplicates": sum(p["duplicates"] for p in report["policies"]),
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }


def child_count(output: Path) -> dict:
    """Current rows of the table, and how many keys hold more than one."""
    import polars as pl

    from batch.output.table import LabelTable

    keys = LabelTable(output).scan().select("policy_id", "source_file", "source_row")
    per_key = keys.group_by("policy_id", "source_file", "source_row").len()
    counted = per_key.select(pl.len().alias("keys"), pl.col("len").sum().alias("rows")).collect()
    return {"keys": int(counted["keys"][0]), "rows": int(counted["rows"][0] or 0)}


def in_child(step: str, *args: Path, kill_after: float | None = None) -> dict | None:
    command = [sys.executable, __file__, "--child", step, *map(str, args)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env)  # fmt: skip
    if kill_after is not None:
        try:
            process.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
        process.communicate()
        return None
    out, err = process.communicate()
    if process.returncode:
        raise SystemExit(f"{step} failed:\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])


def inputs_for(work: Path, rows: int, files: int) -> Path:
    folder = work / f"in-{rows}-{files}"
    if not (folder / ".done").exists():
        shutil.rmtree(folder, ignore_errors=True)
        write_inputs(folder, rows, files)
        (folder / ".done").write_text("")
    return folder


def measure(args, work: Path) -> dict:
    policies = len(POLICY_FILES)
    report: dict = {"rows": args.rows, "files": args.files, "machine": cpu_name()}
    if args.baseline_rows:
        base_in = inputs_for(work, args.baseline_rows, 1)
        shutil.rmtree(work / "out-baseline", ignore_errors=True)
        report["baseline"] = {"rows": args.baseline_rows, "files": 1,
                              **in_child("run", base_in, work / "out-baseline")}  # fmt: skip
    source = inputs_for(work, args.rows, args.files)
    output = work / "out"
    shutil.rmtree(output, ignore_errors=True)
    run = in_child("run", source, output)
    report.update(run)
    report["index_bytes_per_label"] = round(run["index_bytes"] / max(1, run["labels"]), 1)
    if "baseline" in report:
        base = report["baseline"]
        report["ratio_speed"] = round(run["labels_per_second"] / base["labels_per_second"], 3)
        report["ratio_rss"] = round(run["peak_rss_mib"] / base["peak_rss_mib"], 3)
    resume = in_child("run", source, output)
    resume["share_of_first_run"] = round(resume["seconds"] / run["seconds"], 4)
    report["resume"] = resume
    report["verify"] = in_child("verify", source, output)
    if args.kill:
        killed = work / "out-killed"
        shutil.rmtree(killed, ignore_errors=True)
        in_child("run", source, killed, kill_after=run["seconds"] * args.kill_at)
        before = in_child("count", killed)
        in_child("run", source, killed)
        after = in_child("count", killed)
        report["kill"] = {"at_seconds": round(run["seconds"] * args.kill_at, 1),
                          "rows_after_kill": before["rows"], "rows_after_rerun": after["rows"],
                          "keys_after_rerun": after["keys"],
                          "expected": args.rows * policies}  # fmt: skip
        shutil.rmtree(killed, ignore_errors=True)
    if not args.keep:
        shutil.rmtree(output, ignore_errors=True)
    report["targets"] = targets(report, args.rows * policies)
    return report


def targets(report: dict, expected: int) -> dict[str, bool]:
    speed, index = report["labels_per_second"], report["index_bytes_per_label"]
    met = {
        "labels/s >= 10,000 on one core": speed >= TARGETS["labels_per_second"],
        "index <= 150 bytes a label": index <= TARGETS["index_bytes_per_label"],
        "resume sends 0 requests": report["resume"]["requests"] == 0,
        "resume < 5% of the run": report["resume"]["share_of_first_run"] < TARGETS["resume_share"],
        "verify: every row present": report["verify"]["complete"]
        and report["verify"]["present"] == expected,
    }  # fmt: skip
    if "ratio_speed" in report:
        met["labels/s >= 0.9x the baseline"] = report["ratio_speed"] >= TARGETS["speed"]
        met["peak RSS <= 1.2x the baseline"] = report["ratio_rss"] <= TARGETS["rss"]
    if "kill" in report:
        kill = report["kill"]
        met["kill + rerun: every row once"] = (
            kill["rows_after_rerun"] == kill["keys_after_rerun"] == expected
        )
    return met


def print_report(report: dict) -> None:
    print(f"\n{report['machine']}; scripted engine, 2 policies, one pinned core\n")
    print("| run | rows | files | seconds | labels/s | peak RSS MiB | first commit s | commits |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, row in (("baseline", report.get("baseline")), ("this run", report),
                      ("resume", {**report["resume"], "rows": report["rows"],
                                  "files": report["files"]})):  # fmt: skip
        if row:
            print(f"| {name} | {row['rows']:,} | {row['files']} | {row['seconds']:.1f} | "
                  f"{row['labels_per_second']:,.0f} | {row['peak_rss_mib']:.0f} | "
                  f"{row['first_commit_seconds']} | {row['commits']} |")  # fmt: skip
    if "ratio_speed" in report:
        print(f"\nlabels/s {report['ratio_speed']:.2f}x the baseline, peak RSS "
              f"{report['ratio_rss']:.2f}x")  # fmt: skip
    print(f"index {report['index_bytes_per_label']:.0f} bytes a label; resume sent "
          f"{report['resume']['requests']} requests in {report['resume']['share_of_first_run']:.1%}"
          f" of the run's time; verify: {report['verify']}")  # fmt: skip
    if "kill" in report:
        print(f"kill: {report['kill']}")
    for name, met in report["targets"].items():
        print(f"- {name}: {'met' if met else 'MISSED'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=1)
    parser.add_argument("--baseline-rows", type=int, default=10_000, help="0: no baseline")
    parser.add_argument("--kill", action="store_true", help="also SIGKILL a run and rerun it")
    parser.add_argument("--kill-at", type=float, default=0.5, help="share of the run's time")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=None, help="inputs kept here; default: tmp")
    parser.add_argument("--keep", action="store_true", help="keep the output table")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, every step")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("TIKTOKEN_ENCODINGS_BASE", str(ROOT.parent / "shared" / "vocab"))
    if args.child:
        step, *paths = args.child
        steps = {"run": child_run, "verify": child_verify, "count": child_count}
        print(json.dumps(steps[step](*map(Path, paths))))
        return 0
    if args.smoke:
        args.rows, args.files, args.baseline_rows, args.kill = 3000, 2, 1000, True
    if args.work:  # kept: the inputs are made once per size, later runs reuse them
        args.work.mkdir(parents=True, exist_ok=True)
        report = measure(args, args.work)
    else:
        with tempfile.TemporaryDirectory() as scratch:
            report = measure(args, Path(scratch))
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
