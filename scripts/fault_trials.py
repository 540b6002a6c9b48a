"""Randomized fault trials: kills, a vacuum beside a run, two runs at once, inputs that shrink
and grow, DELETEs by hand; after each trial a last run must leave exactly the right rows.

    python scripts/fault_trials.py [--trials 200] [--seed 0] [--json PATH]

Each trial (seeded: ``--seed`` + its number) makes three small input files and an output, then
takes 3 to 6 random steps:

- ``label``: a run of the two demo policies through a scripted engine, killed (SIGKILL) at a
  random moment, or after its Nth commit, or left to finish;
- ``two labels``: two such runs at once, one of them perhaps killed;
- ``compact``: ``compact --vacuum 0`` while a run is going (and perhaps killed);
- ``edit``: a file shrinks, grows, has a row rewritten (same length or not), or is replaced;
- ``delete``: rows deleted from the table by another writer (delta-rs, not this tool).

Then one run to the end, and the check: one current row per (input row, policy), each for
the row's present content, and ``verify`` complete. A failing trial prints its seed and its
steps, and the script exits 1. The test suite runs three trials.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
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

WORDS = [
    "free",
    "prize",
    "call",
    "now",
    "see",
    "you",
    "later",
    "cake",
    "keys",
    "text",
    "win",
    "reply",
    "stop",
    "ok",
    "thanks",
]


def child_label(inputs: str, output: str, die_after: int) -> None:
    """One labelling run in this process (a scripted engine that takes its time)."""
    from scripted_runs import POLICY_FILES, policy_responder

    import batch.flow.stream as stream
    from batch.engine.base import SamplingSettings
    from batch.engine.scripted import ScriptedEngine
    from batch.flow.config import JobConfig
    from batch.flow.read import inspect_inputs
    from batch.flow.sources import resolve_sources
    from batch.output.index import Index
    from batch.output.table import LabelTable
    from batch.policy.files import load_policies
    from batch.runners.local import run_label_job

    stream.COMMIT_GAP_SECONDS = stream.MAX_COMMIT_GAP_SECONDS = 0.01
    if die_after:
        upsert, done = LabelTable.upsert, [0]

        def counted(table, rows, metadata):
            version = upsert(table, rows, metadata)
            done[0] += 1
            if done[0] >= die_after:
                os._exit(137)
            return version

        LabelTable.upsert = counted
    policies = load_policies(POLICY_FILES)
    respond = policy_responder(policies)

    class Slow(ScriptedEngine):
        def generate(self, requests, sampling):
            time.sleep(0.01)
            return super().generate(requests, sampling)

    sources = resolve_sources([inputs])
    files, _ = inspect_inputs(sources, "id", "text", index=Index.if_exists(output))
    config = JobConfig(
        inputs=files,
        policies=policies,
        output=output,
        model="scripted",
        model_fingerprint="0" * 64,
        sampling=SamplingSettings(1.0, 1.0, 64),
        chunk_size=3,
        batch_size=6,
        max_model_len=4096,
        command=["trial"],
    )
    run_label_job(config, Slow(respond, record=False, per_step=2))


def child_compact(output: str) -> None:
    from batch.job.maintenance import compact

    compact(output, target_rows=1000, vacuum_hours=0)


def start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, __file__, "--child", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def finish(process: subprocess.Popen, kill_after: float | None) -> str:
    """Wait for a child (or kill it after ``kill_after`` seconds); its error output."""
    try:
        _, err = process.communicate(timeout=kill_after if kill_after is not None else 300)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.communicate()
        return ""
    # 137: it died after its Nth commit, as asked; anything else but 0 is a finding
    return err[-1500:] if process.returncode not in (0, 137, -signal.SIGKILL) else ""


class Trial:
    def __init__(self, number: int, seed: int, work: Path) -> None:
        self.rng = random.Random(seed * 100_003 + number)
        self.inputs, self.output = work / "in", work / "out"
        self.steps: list[str] = []
        self.errors: list[str] = []
        self.files = {f"part-{i}.parquet": self._texts(self.rng.randint(2, 10)) for i in range(3)}
        for name in self.files:
            self._write(name)

    def _texts(self, count: int) -> list[str]:
        return [" ".join(self.rng.choices(WORDS, k=self.rng.randint(1, 5))) for _ in range(count)]

    def _write(self, name: str) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.inputs.mkdir(parents=True, exist_ok=True)
        texts = self.files[name]
        ids = [f"{name}-{i}" for i in range(len(texts))]
        pq.write_table(pa.table({"id": ids, "text": texts}), self.inputs / name)

    def _label(self, kill: bool) -> subprocess.Popen:
        die = self.rng.randint(1, 6) if kill and self.rng.random() < 0.5 else 0
        return start("label", str(self.inputs), str(self.output), str(die))

    def _killing(self) -> float | None:
        return self.rng.uniform(0.3, 2.5) if self.rng.random() < 0.6 else None

    def step(self) -> None:
        kind = self.rng.choice(["label", "label", "two labels", "compact", "edit", "delete"])
        self.steps.append(kind)
        if kind == "label":
            self.errors.append(finish(self._label(kill=True), self._killing()))
        elif kind == "two labels":
            first, second = self._label(kill=True), self._label(kill=False)
            self.errors += [finish(first, self._killing()), finish(second, None)]
        elif kind == "compact":
            if (self.output / "_delta_log").is_dir():
                run = self._label(kill=True)
                time.sleep(self.rng.uniform(0.2, 1.0))
                self.errors += [finish(start("compact", str(self.output)), None),
                                finish(run, self._killing())]  # fmt: skip
        elif kind == "edit":
            self._edit()
        else:
            self._delete()

    def _edit(self) -> None:
        name = self.rng.choice(sorted(self.files))
        texts = self.files[name]
        how = self.rng.choice(["shrink", "grow", "same length", "rewrite", "replace"])
        self.steps[-1] = f"edit {name}: {how}"
        if how == "shrink" and len(texts) > 1:
            del texts[self.rng.randint(1, len(texts) - 1) :]
        elif how == "grow":
            texts += self._texts(self.rng.randint(1, 4))
        elif how == "same length":
            row = self.rng.randrange(len(texts))
            texts[row] = texts[row][:-1] + ("x" if not texts[row].endswith("x") else "y")
        elif how == "rewrite":
            texts[self.rng.randrange(len(texts))] = " ".join(self.rng.choices(WORDS, k=6))
        else:
            self.files[name] = self._texts(self.rng.randint(2, 10))
        self._write(name)

    def _delete(self) -> None:
        if not (self.output / "_delta_log").is_dir():
            return
        from deltalake import DeltaTable

        name = self.rng.choice(sorted(self.files))
        first = self.rng.randint(0, 5)
        self.steps[-1] = f"delete {name} rows >= {first}"
        DeltaTable(str(self.output)).delete(f"source_file = '{name}' AND source_row >= {first}")

    def check(self) -> list[str]:
        """The last run to the end, then what is wrong with the table (nothing, if right)."""
        err = finish(start("label", str(self.inputs), str(self.output), "0"), None)
        problems = [e for e in self.errors if e]
        if err:
            problems.append(f"last run failed: {err[-800:]}")
        from scripted_runs import POLICY_FILES

        from batch.flow.read import inspect_inputs
        from batch.flow.sources import resolve_sources
        from batch.output.table import LabelTable
        from batch.policy.files import load_policies
        from batch.reports.verify import verify

        rows = LabelTable(self.output).scan().select(
            "policy_id", "source_file", "source_row", "content_sha256"
        ).collect().rows()  # fmt: skip
        found: dict[tuple, list[str]] = {}
        for policy, source, row, digest in rows:
            found.setdefault((policy, source, row), []).append(digest)
        expected = {
            (policy, name, row): hashlib.sha256(text.encode()).hexdigest()
            for policy in ("spam", "harassment")
            for name, texts in self.files.items()
            for row, text in enumerate(texts)
        }
        if set(found) != set(expected):
            problems.append(f"keys: missing {sorted(set(expected) - set(found))[:5]}, "
                            f"extra {sorted(set(found) - set(expected))[:5]}")  # fmt: skip
        doubled = [k for k, v in found.items() if len(v) > 1]
        stale = [k for k, v in found.items() if k in expected and v[0] != expected[k]]
        if doubled or stale:
            problems.append(f"doubled {doubled[:5]}, stale {stale[:5]}")
        files, _ = inspect_inputs(resolve_sources([str(self.inputs)]), "id", "text")
        if not verify(self.output, files, load_policies(POLICY_FILES))["complete"]:
            problems.append("verify: incomplete")
        return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("TIKTOKEN_ENCODINGS_BASE", str(ROOT.parent / "shared" / "vocab"))
    if args.child:
        kind, *rest = args.child
        if kind == "label":
            child_label(rest[0], rest[1], int(rest[2]))
        else:
            child_compact(rest[0])
        return 0
    results, started = [], time.monotonic()
    for number in range(args.trials):
        with tempfile.TemporaryDirectory() as work:
            trial = Trial(number, args.seed, Path(work))
            for _ in range(trial.rng.randint(3, 6)):
                trial.step()
            problems = trial.check()
        results.append({"trial": number, "steps": trial.steps, "problems": problems})
        mark = "ok" if not problems else f"FAILED: {problems}"
        print(f"trial {number} (seed {args.seed}): {', '.join(trial.steps)}: {mark}", flush=True)
    failed = [r for r in results if r["problems"]]
    kinds: dict[str, int] = {}
    for result in results:
        for step in result["steps"]:
            kinds[step.split(" ")[0]] = kinds.get(step.split(" ")[0], 0) + 1
    summary = {"trials": len(results), "failed": len(failed), "steps": kinds,
               "seconds": round(time.monotonic() - started, 1)}  # fmt: skip
    print(json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps({**summary, "results": results}, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
