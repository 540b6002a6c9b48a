"""``policy hash`` and ``policy test``: a policy as a run sees it, checked like code.

``hash`` prints the hashes a run records; ``test`` labels the ``[[tests]]`` cases of a policy's
front matter through the same flow as ``label`` (render, engine, parse) and says which pass.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from batch.engine.base import Engine, SamplingSettings
from batch.flow.config import JobConfig
from batch.flow.read import inspect_inputs
from batch.flow.render import render_prefix
from batch.job.engine import model_name, prepare_engine, quiet_engine_logs, start_engine
from batch.job.options import EngineOptions
from batch.output.labels import scan_labels
from batch.output.schema import OK
from batch.policy.files import Policy, PolicyError, load_policies, load_policy, sha256_file
from batch.policy.lint import policy_test_cases
from batch.runners.local import run_label_job
from batch.vocab import VocabError


def policy_hashes(path: str | Path, reasoning_effort: str = "low") -> dict[str, Any]:
    """The hashes a run records for this policy: file bytes, and the rendered prompt prefix."""
    policy = load_policy(path)
    result: dict[str, Any] = {
        "path": str(path),
        "id": policy.id,
        "version": policy.version,
        "policy_sha256": sha256_file(path),
        "reasoning_effort": reasoning_effort,
    }
    try:
        prefix = render_prefix(policy, reasoning_effort)
        result["prompt_sha256"] = prefix.sha256
        result["prefix_tokens"] = len(prefix.token_ids)
    except VocabError as exc:
        result["prompt_sha256"] = None
        result["prompt_error"] = str(exc)
    return result


@dataclass
class CaseResult:
    policy_id: str
    number: int
    text: str
    expected: int
    label: str | None
    status: str
    passed: bool
    rationale: str | None
    error: str | None


def _label_cases(
    policy: Policy,
    cases: list[dict[str, Any]],
    folder: Path,
    engine: Engine,
    settings: dict[str, Any],
) -> dict[int, dict[str, Any]]:
    """Label one policy's cases as a one-shard job; its output rows by case number (0-based)."""
    shard = folder / f"{policy.id}.parquet"
    texts = [c["text"] for c in cases]
    pq.write_table(pa.table({"id": [str(n) for n in range(len(cases))], "text": texts}), shard)
    files, _ = inspect_inputs([str(shard)], "id", "text", False)
    out = folder / f"out-{policy.id}"
    config = JobConfig(
        inputs=files,
        policies=[policy],
        output=str(out),
        reuse=False,
        command=["safeguard-batch", "policy", "test"],
        **settings,
    )
    run_label_job(config, engine)
    return {r["source_row"]: r for r in scan_labels(out).collect().to_dicts()}


def run_policy_tests(
    policies: list[Policy],
    engine: Engine,
    model: str,
    model_fingerprint: str,
    reasoning_effort: str,
    sampling: SamplingSettings,
    max_model_len: int | None,
) -> list[CaseResult]:
    """Label each policy's own test cases through the full job (render, engine, parse)."""
    settings = {
        "model": model,
        "model_fingerprint": model_fingerprint,
        "reasoning_effort": reasoning_effort,
        "sampling": sampling,
        "max_model_len": max_model_len,
    }
    results: list[CaseResult] = []
    with tempfile.TemporaryDirectory(prefix="policy-test-") as tmp:
        for policy in policies:
            cases = policy_test_cases(policy.meta, policy.path)
            if not cases:
                continue
            by_row = _label_cases(policy, cases, Path(tmp), engine, settings)
            for number, case in enumerate(cases):
                row = by_row[number]
                results.append(
                    CaseResult(
                        policy.id,
                        number + 1,
                        case["text"],
                        int(case["expected"]),
                        row["label"],
                        row["status"],
                        row["status"] == OK and row["label"] == str(case["expected"]),
                        row["rationale"] or row["reasoning"],
                        row["error"],
                    )
                )
    return results


def check_policies(files: list[str], options: EngineOptions) -> list[CaseResult]:
    """``policy test``: refuse policies without cases, load the engine, run every case."""
    quiet_engine_logs(options.verbose)
    policies = load_policies(list(files))
    for policy in policies:
        if not policy_test_cases(policy.meta, policy.path):
            raise PolicyError(f"{policy.path}: no [[tests]] cases in the front matter")
    engine_config, fingerprint = prepare_engine(options)
    engine = start_engine(engine_config)
    return run_policy_tests(
        policies,
        engine,
        model_name(options),
        fingerprint,
        options.reasoning_effort,
        options.sampling,
        engine.max_model_len,
    )


def format_test_results(results: list[CaseResult]) -> str:
    lines = []
    for r in results:
        mark = "PASS" if r.passed else "FAIL"
        got = r.label if r.status == OK else r.status
        lines.append(
            f"{mark} {r.policy_id} #{r.number}: expected {r.expected}, got {got}: {r.text[:70]!r}"
        )
        if not r.passed:
            why = r.rationale or r.error or "(no rationale)"
            lines.append(f"     model's reasoning: {' '.join(why.split())[:300]}")
    passed = sum(r.passed for r in results)
    lines.append(f"{passed}/{len(results)} test cases passed")
    return "\n".join(lines)
