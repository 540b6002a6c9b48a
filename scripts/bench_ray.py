"""One Ray actor against the local runner: the same prompts, the same engine, the same settings.

    python scripts/bench_ray.py [--rows N] [--slots S] [--step-ms MS] [--json PATH] [--smoke]

The engine is a stand-in for a model under continuous batching (``scripted_runs.PacedEngine``):
``--slots`` sequences decode at once, a step every ``--step-ms``, each request 1 to
``--max-steps`` steps long, a finished slot refilled at once (the defaults are GPU-like: 256
sequences, completions of very different lengths). So its limit is known
(``engine_limit_per_second``), and a runner that feeds it a batch at a time, waiting for each
batch's longest request, shows as idle slots. Both runs label the same ``--rows`` short texts
under the two demo policies into fresh outputs; the Ray run uses one actor on a local Ray
instance started before the clock starts (as a cluster would be), so the actor's start-up is
counted, Ray's is not. ``ratio`` is the Ray run's labels/s over the local run's (target >= 0.9).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from scripted_runs import POLICY_FILES, PacedFactory, cpu_name, write_inputs  # noqa: E402

TARGET = 0.9


def config_for(inputs: Path, output: Path, policies):
    from batch.engine.base import SamplingSettings
    from batch.flow.config import JobConfig
    from batch.flow.read import inspect_inputs
    from batch.flow.sources import resolve_sources

    files, _ = inspect_inputs(resolve_sources([str(inputs)]), "id", "text")
    return JobConfig(inputs=files, policies=policies, output=str(output), model="paced",
                     model_fingerprint="0" * 64, sampling=SamplingSettings(1.0, 1.0, 1024),
                     max_model_len=8192, command=["bench_ray"])  # fmt: skip


def timed(label: str, run) -> dict:
    started = time.perf_counter()
    manifest = run().manifest
    seconds = time.perf_counter() - started
    labels = manifest["counts"]["labelled"]
    print(f"{label}: {labels} labels in {seconds:.1f} s", flush=True)
    return {"seconds": round(seconds, 2), "labels": labels,
            "labels_per_second": round(labels / seconds, 1)}  # fmt: skip


def measure(args, work: Path) -> dict:
    import ray

    from batch.policy.files import load_policies
    from batch.runners.local import run_label_job
    from batch.runners.ray import run_label_job_ray

    policies = load_policies(POLICY_FILES)
    inputs = work / "in"
    write_inputs(inputs, args.rows, args.files)
    factory = PacedFactory(policies, args.slots, args.step_ms / 1000, args.max_steps)
    started_ray = not ray.is_initialized()  # the test suite shares its own Ray instance
    if started_ray:
        paths = os.pathsep.join([str(ROOT), str(HERE), os.environ.get("PYTHONPATH", "")])
        vocab = os.environ["TIKTOKEN_ENCODINGS_BASE"]
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": paths,
                                           "TIKTOKEN_ENCODINGS_BASE": vocab}})  # fmt: skip
    try:
        local = timed("local", lambda: run_label_job(
            config_for(inputs, work / "local", policies), factory()))  # fmt: skip
        remote = timed("ray, 1 actor", lambda: run_label_job_ray(
            config_for(inputs, work / "ray", policies), factory, replicas=1,
            cpus_per_replica=1))  # fmt: skip
    finally:
        if started_ray:
            ray.shutdown()
    mean_steps = (1 + args.max_steps) / 2
    return {
        "machine": cpu_name(),
        "rows": args.rows,
        "labels": local["labels"],
        "slots": args.slots,
        "step_ms": args.step_ms,
        "engine_limit_per_second": round(args.slots / (mean_steps * args.step_ms / 1000), 1),
        "local": local,
        "ray": remote,
        "ratio": round(remote["labels_per_second"] / local["labels_per_second"], 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--slots", type=int, default=256)
    parser.add_argument("--step-ms", type=float, default=5.0)
    parser.add_argument("--max-steps", type=int, default=64)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds")
    args = parser.parse_args(argv)
    os.environ.setdefault("TIKTOKEN_ENCODINGS_BASE", str(ROOT.parent / "shared" / "vocab"))
    if args.smoke:
        args.rows, args.files, args.slots, args.step_ms, args.max_steps = 300, 2, 16, 2.0, 8
    scratch = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    try:
        report = measure(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(
        f"\n{report['machine']}; paced engine: {report['slots']} slots, "
        f"{report['step_ms']} ms a step, limit {report['engine_limit_per_second']:,} labels/s"
    )
    for name in ("local", "ray"):
        row = report[name]
        print(f"| {name} | {row['labels']:,} labels | {row['seconds']:.1f} s | "
              f"{row['labels_per_second']:,.0f} labels/s |")  # fmt: skip
    met = "met" if report["ratio"] >= TARGET else "MISSED"
    print(f"ray / local: {report['ratio']:.2f} (target >= {TARGET}: {met})")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
