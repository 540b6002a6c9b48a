"""What does a table on S3 cost the job? The same run with inputs and table on local disk, then
with both on an S3 API (moto's server on loopback), in one invocation.

    python scripts/bench_object_store.py --rows N --files F [--json PATH] [--smoke]

The scripted engine answers every request at once (the two demo policies), so only the job's
own costs show, and with them the store's: listing and HEAD requests for the inputs, reads of
row groups, each commit's log reads and conditional put, the claims' conditional writes. Each
run is a fresh process pinned to one core (moto's server gets the others). Reported per side:
``seconds``, ``labels_per_second``, ``commits``, a resume (the same command again: 0 requests)
and ``verify``; ``ratio_speed`` is S3's labels/s over local's. moto is a Python server on the
same machine: its latency is lower and its throughput far lower than a real store's, so the
ratio says what the tool's own request pattern costs against one slow server, not what AWS
would give. ``--smoke`` runs every step at tiny sizes (the test suite runs it).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from bench_run_scale import child_run, child_verify  # noqa: E402
from scripted_runs import (  # noqa: E402
    cpu_name,
    write_inputs,
)

S3_SETTINGS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_ALLOW_HTTP": "true",
}


def in_child(step: str, inputs: str, output: str, env: dict) -> dict:
    command = [sys.executable, __file__, "--child", step, inputs, output]
    done = subprocess.run(command, capture_output=True, text=True,
                          env={**env, "PYTHONPATH": str(ROOT)})  # fmt: skip
    if done.returncode:
        raise SystemExit(f"{step} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def start_moto() -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cores) > 1:
        os.sched_setaffinity(server.pid, set(cores[1:]))  # the job has the first core
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(endpoint, timeout=1).close()
            return server, endpoint
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("moto's S3 server did not start")


def upload(folder: Path, endpoint: str, bucket: str) -> str:
    from pyarrow import fs

    store = fs.S3FileSystem(endpoint_override=endpoint, allow_bucket_creation=True,
                            access_key="bench", secret_key="bench", region="us-east-1")  # fmt: skip
    store.create_dir(bucket)
    for path in sorted(folder.glob("*.parquet")):
        fs.copy_files(str(path), f"{bucket}/in/{path.name}", destination_filesystem=store)
    return f"s3://{bucket}/in"


def side(name: str, inputs: str, output: str, env: dict) -> dict:
    run = in_child("run", inputs, output, env)
    resume = in_child("run", inputs, output, env)
    run["resume"] = {"seconds": resume["seconds"], "requests": resume["requests"]}
    run["verify"] = in_child("verify", inputs, output, env)
    print(f"{name}: {run}", flush=True)
    return run


def measure(args, work: Path) -> dict:
    folder = work / "in"
    write_inputs(folder, args.rows, args.files)
    report: dict = {"rows": args.rows, "files": args.files, "machine": cpu_name()}
    report["local"] = side("local", str(folder), str(work / "out"), dict(os.environ))
    server, endpoint = start_moto()
    try:
        env = {**os.environ, **S3_SETTINGS, "AWS_ENDPOINT_URL": endpoint,
               "SAFEGUARD_BATCH_CACHE_DIR": str(work / "cache")}  # fmt: skip
        inputs = upload(folder, endpoint, "bench")
        report["s3"] = side("s3", inputs, "s3://bench/labels", env)
    finally:
        server.terminate()
        server.wait(timeout=30)
    local, s3 = report["local"], report["s3"]
    report["ratio_speed"] = round(s3["labels_per_second"] / local["labels_per_second"], 3)
    expected = args.rows * 2
    report["checks"] = {
        "both label every row": local["labels"] == s3["labels"] == expected,
        "both resumes send 0 requests": local["resume"]["requests"] == s3["resume"]["requests"]
        == 0,
        "both verify complete": local["verify"]["complete"] and s3["verify"]["complete"],
    }  # fmt: skip
    return report


def print_report(report: dict) -> None:
    print(f"\n{report['machine']}; scripted engine, 2 policies, the job on one pinned core\n")
    print("| table | rows | files | seconds | labels/s | commits | resume s | verify s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in ("local", "s3"):
        row = report[name]
        print(f"| {name} | {report['rows']:,} | {report['files']} | {row['seconds']:.1f} | "
              f"{row['labels_per_second']:,.0f} | {row['commits']} | "
              f"{row['resume']['seconds']:.1f} | {row['verify']['seconds']:.1f} |")  # fmt: skip
    print(f"\nS3 (moto on loopback) labels/s {report['ratio_speed']:.2f}x local")
    for name, met in report["checks"].items():
        print(f"- {name}: {'yes' if met else 'NO'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, every step")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("TIKTOKEN_ENCODINGS_BASE", str(ROOT.parent / "shared" / "vocab"))
    if args.child:
        step, inputs, output = args.child
        steps = {"run": child_run, "verify": child_verify}
        print(json.dumps(steps[step](inputs, output)))
        return 0
    if args.smoke:
        args.rows, args.files = 2000, 2
    with tempfile.TemporaryDirectory() as scratch:
        report = measure(args, Path(scratch))
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if all(report["checks"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
