"""A labelling run with a slow scripted engine, as a process the kill tests can SIGKILL.

python tests/scripted_job.py INPUT_DIR OUTPUT_DIR [--delay SECONDS]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import conftest  # noqa: E402,F401  (sets the vocabulary path)
from helpers import make_config  # noqa: E402

from batch.engine.scripted import ScriptedEngine  # noqa: E402
from batch.policy.files import load_policies  # noqa: E402
from batch.runners.local import run_label_job  # noqa: E402


class SlowEngine(ScriptedEngine):
    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def generate(self, requests, sampling):
        time.sleep(self.delay)
        return super().generate(requests, sampling)


class SlowFactory:
    """Builds a slow engine inside a Ray actor."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def __call__(self) -> SlowEngine:
        return SlowEngine(self.delay)


class WindowEngine(ScriptedEngine):
    """Answers one request a step, slowly, and records (in a file) the most requests it
    held at once: how continuously its feeder keeps it busy."""

    def __init__(self, record_to: str, delay: float) -> None:
        super().__init__(per_step=1, record=False)
        self.record_to, self.delay = record_to, delay

    def generate(self, requests, sampling):
        time.sleep(self.delay)
        Path(self.record_to).write_text(str(self.max_in_flight_seen))
        return super().generate(requests, sampling)


class WindowFactory:
    def __init__(self, record_to: str, delay: float = 0.0) -> None:
        self.record_to, self.delay = record_to, delay

    def __call__(self) -> WindowEngine:
        return WindowEngine(self.record_to, self.delay)


class BrokenEngine(ScriptedEngine):
    """Answers every request twice: the stream's contract broken (EngineContractError)."""

    def stream(self, requests, sampling, max_in_flight):
        for item in super().stream(requests, sampling, max_in_flight):
            yield item
            yield item


class BrokenFactory:
    def __call__(self) -> BrokenEngine:
        return BrokenEngine()


def die_after(commits: int) -> None:
    """Exit at once, without cleanup, after ``commits`` commits of labels (each with the
    index told, as a commit is complete)."""
    import os

    import batch.flow.labeller as labeller

    write, done = labeller.write_rows, [0]

    def counted(*args, **kwargs):
        version = write(*args, **kwargs)
        done[0] += version is not None
        if done[0] >= commits:
            os._exit(137)
        return version

    labeller.write_rows = counted


def die_inside(commits: int) -> None:
    """Exit at once right after the Nth table commit returns, before anything else of the
    run (the index's update, the label store) is told of it."""
    import os

    import batch.output.table as table

    upsert, done = table.LabelTable.upsert, [0]

    def counted(self, *args, **kwargs):
        version = upsert(self, *args, **kwargs)
        done[0] += 1
        if done[0] >= commits:
            os._exit(137)
        return version

    table.LabelTable.upsert = counted


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--delay", type=float, default=0.02)
    parser.add_argument("--runner", choices=["local", "ray"], default="local")
    # Commits as often as answers come (about one per engine step), so a kill can land
    # between any two of them.
    parser.add_argument("--commit-gap", type=float, default=0.01)
    # Die (as SIGKILL would: no cleanup) right after the Nth commit of labels.
    parser.add_argument("--die-after-commits", type=int, default=None)
    # Die right after the Nth table commit, before the index hears of it.
    parser.add_argument("--die-inside-commit", type=int, default=None)
    parser.add_argument("--retry-failed", action="store_true")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    import batch.flow.stream as stream

    stream.COMMIT_GAP_SECONDS = stream.MAX_COMMIT_GAP_SECONDS = args.commit_gap
    if args.die_after_commits is not None:
        die_after(args.die_after_commits)
    if args.die_inside_commit is not None:
        die_inside(args.die_inside_commit)
    policies = load_policies([conftest.POLICIES / "spam.md", conftest.POLICIES / "harassment.md"])
    config = make_config([args.input], policies, args.output, chunk_size=3, batch_size=6,
                         retry_failed=args.retry_failed, force=args.force)  # fmt: skip
    if args.runner == "ray":
        import ray

        from batch.runners.ray import run_label_job_ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": conftest.ray_worker_env()})  # fmt: skip
        print("started", flush=True)
        result = run_label_job_ray(
            config, SlowFactory(args.delay), replicas=2, cpus_per_replica=0.5
        )
    else:
        print("started", flush=True)
        result = run_label_job(config, SlowEngine(args.delay))
    print("finished", json.dumps(result.manifest["counts"]), flush=True)


if __name__ == "__main__":
    main()
