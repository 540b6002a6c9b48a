"""What the scripted-engine benchmarks share: inputs of distinct short texts, an engine that
answers every policy in its own format at once (so only the job's own costs show), one pinned
core, and peak memory read the same way everywhere."""

from __future__ import annotations

import os
import resource
import time
import zlib
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from batch.engine.scripted import ScriptedEngine

ROOT = Path(__file__).resolve().parents[1]
POLICY_FILES = [ROOT / "policies" / "spam.md", ROOT / "policies" / "harassment.md"]
SMS = ROOT.parent / "shared" / "data" / "sms-spam-collection" / "SMSSpamCollection"
ANSWERS = {"binary": "0", "json": '{"violation": 0, "policy_category": null}'}


def base_texts() -> list[str]:
    """Distinct SMS messages when the shared data is there, else a few made-up ones."""
    if SMS.is_file():
        seen: dict[str, None] = {}
        for line in SMS.read_text(encoding="utf-8", errors="replace").splitlines():
            _, _, text = line.partition("\t")
            if text:
                seen.setdefault(text)
        return list(seen)
    return [f"see you at {hour} tonight, bring the {thing}" for hour in range(1, 13)
            for thing in ("cake", "keys", "map", "book")]  # fmt: skip


def distinct_texts(start: int, count: int, base: list[str]) -> Iterator[str]:
    """Texts ``start`` .. ``start + count``, all distinct: a short message and its number."""
    for number in range(start, start + count):
        yield f"{base[number % len(base)]} #{number}"


def write_inputs(folder: Path, rows: int, files: int, row_group: int = 100_000) -> list[Path]:
    """``rows`` distinct texts in ``files`` Parquet files of equal size (ids ``r<number>``),
    written a row group at a time, so memory stays flat however many rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    base = base_texts()
    per_file = -(-rows // files)
    paths = []
    for number in range(files):
        start, stop = number * per_file, min(rows, (number + 1) * per_file)
        path = folder / f"part-{number:05d}.parquet"
        schema = pa.schema([("id", pa.string()), ("text", pa.string())])
        with pq.ParquetWriter(path, schema) as writer:
            for low in range(start, stop, row_group):
                high = min(stop, low + row_group)
                ids = [f"r{i}" for i in range(low, high)]
                texts = list(distinct_texts(low, high - low, base))
                writer.write_table(pa.table({"id": ids, "text": texts}, schema=schema))
        paths.append(path)
    return paths


def policy_responder(policies):
    """An answer function for the scripted engine: each policy's "no" in its own format,
    told apart by the first prompt token where the policies' prefixes differ."""
    from batch.flow.render import render_prefix

    prefixes = [render_prefix(p).token_ids for p in policies]
    if len(prefixes) == 1:
        answer = ANSWERS[policies[0].output]
        return lambda request: answer
    where = next(i for i, pair in enumerate(zip(*prefixes, strict=False)) if len(set(pair)) > 1)
    by_token = {
        prefix[where]: ANSWERS[p.output] for prefix, p in zip(prefixes, policies, strict=True)
    }

    def respond(request):
        return by_token[request.prompt_token_ids[where]]

    return respond


def pin_one_core() -> int | None:
    """Run this process on one CPU core (its threads too); the core, or None where the OS
    cannot pin."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    core = sorted(os.sched_getaffinity(0))[0]
    os.sched_setaffinity(0, {core})
    return core


def peak_rss_mib() -> float:
    """This process's peak resident memory since it started (``VmHWM``: unlike ``ru_maxrss``,
    not inherited from the parent that forked it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def disk_bytes(folder: Path) -> int:
    """What the files of a folder take on disk (allocated blocks: a sparse file's holes are
    not counted)."""
    return sum(p.stat().st_blocks * 512 for p in folder.iterdir() if p.is_file())


def cpu_name() -> str:
    """The CPU's model name and its widest vector extension, for the benchmark's report."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                 if line.startswith("model name")), "unknown")  # fmt: skip
    flags = next((line for line in info.splitlines() if line.startswith("flags")), "")
    vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{name} ({vector}, {os.cpu_count()} cores)"


class PacedFactory:
    """Builds a :class:`PacedEngine` (in a Ray actor too: it pickles, the engine need not)."""

    def __init__(self, policies, slots: int, step_seconds: float, max_steps: int) -> None:
        self.policy_files = [str(p.path) for p in policies]
        self.slots, self.step_seconds, self.max_steps = slots, step_seconds, max_steps

    def __call__(self):
        from batch.policy.files import load_policies

        respond = policy_responder(load_policies(self.policy_files))
        return PacedEngine(respond, self.slots, self.step_seconds, self.max_steps)


class PacedEngine(ScriptedEngine):
    """A stand-in for a model under continuous batching: ``slots`` sequences decode at once,
    one step every ``step_seconds``; each request needs 1 to ``max_steps`` steps (from its
    prompt, so the same in every run), and a finished one's slot is refilled at once."""

    def __init__(self, respond, slots: int, step_seconds: float, max_steps: int) -> None:
        super().__init__(respond, record=False, slots=slots)
        self.step_seconds, self.max_steps = step_seconds, max_steps

    def stream(self, requests, sampling, max_in_flight):
        pending, waiting, active = iter(requests), deque(), []
        while True:
            while len(active) + len(waiting) < max_in_flight:
                item = next(pending, None)
                if item is None:
                    break
                waiting.append(item)
            while len(active) < self.slots and waiting:
                key, request = waiting.popleft()
                tail = str(request.prompt_token_ids[-16:]).encode()
                active.append([1 + zlib.crc32(tail) % self.max_steps, key, request])
            if not active:
                return
            time.sleep(self.step_seconds)
            for entry in active:
                entry[0] -= 1
            done = [entry for entry in active if entry[0] <= 0]
            active = [entry for entry in active if entry[0] > 0]
            for _, key, request in done:
                yield key, self.generate([request], sampling)[0]
