"""Tools for policy writers: lint a policy, print its hashes, run its test cases.

A policy change should be checked like code. ``lint`` catches what makes a policy unusable
(errors) or weaker than OpenAI's guide recommends (warnings); ``test`` runs the labelled
cases in a policy's front matter through a model and reports which pass::

    [[tests]]
    text = "WINNER! Claim your prize, text WIN to 80086"
    expected = 1
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from batch.policy import (
    OUTPUT_FORMATS,
    POLICY_ID_PATTERN,
    Policy,
    PolicyError,
    load_policy,
    sha256_file,
    split_front_matter,
)

TOKEN_SWEET_SPOT = (400, 600)  # OpenAI's guide: best results in this range
TOKEN_CEILING = 10_000  # the guide: works up to about this
EXAMPLES_RECOMMENDED = (4, 6)
# Sections the guide recommends, and the heading words that count as each.
SECTIONS = {
    "instructions": ("instruction",),
    "definitions": ("definition",),
    "what violates (label 1)": ("violat", "label 1", "disallowed", "not allowed"),
    "what is safe (label 0)": ("does not violate", "safe", "allowed", "label 0", "not a violation"),
    "examples": ("example",),
    "output format": ("output",),
}
_HEADING = re.compile(r"^#{1,6}\s+(.*\S)\s*$")
_LABELLED_EXAMPLE = re.compile(r"(->|→|=>|:|label)\s*`?\s*([01])\b", re.IGNORECASE)


@dataclass
class LintReport:
    path: str
    policy_id: str | None = None
    tokens: int | None = None
    examples: int = 0
    tests: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def _sections(body: str) -> dict[str, str]:
    """Heading (lower-case) -> the text under it, up to the next heading."""
    sections: dict[str, list[str]] = {}
    current = ""
    for line in body.splitlines():
        heading = _HEADING.match(line)
        if heading:
            current = heading.group(1).lower()
            sections.setdefault(current, [])
        else:
            sections.setdefault(current, []).append(line)
    return {k: "\n".join(v) for k, v in sections.items()}


def _find(sections: dict[str, str], words: tuple[str, ...]) -> str | None:
    for heading in sections:
        if heading and any(word in heading for word in words):
            return heading
    return None


def token_count(text: str) -> int:
    """Tokens of the policy text as harmony's tokenizer (o200k) counts them."""
    from batch.render import load_encoding

    return len(load_encoding().encode(text, disallowed_special=()))


def policy_test_cases(meta: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """The ``[[tests]]`` of a policy's front matter, validated."""
    cases = meta.get("tests", [])
    if not isinstance(cases, list):
        raise PolicyError(f"{where}: 'tests' must be an array of tables ([[tests]])")
    for number, case in enumerate(cases, 1):
        if not isinstance(case, dict) or not isinstance(case.get("text"), str):
            raise PolicyError(f"{where}: test {number} needs a 'text' string")
        if case.get("expected") not in (0, 1):
            raise PolicyError(f"{where}: test {number} needs 'expected' = 0 or 1")
    return cases


def lint_policy(path: str | Path) -> LintReport:
    """Every problem with one policy file, as errors and warnings."""
    report = LintReport(str(path))
    try:
        source = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        report.errors.append(f"cannot read the file: {exc}")
        return report
    try:
        meta, body = split_front_matter(source, str(path))
    except PolicyError as exc:
        report.errors.append(str(exc).split(": ", 1)[-1])
        return report
    for key, why in (
        ("id", "names the output partition"),
        ("version", "is recorded on every label"),
        ("output", f"the output format the job parses: one of {', '.join(OUTPUT_FORMATS)}"),
    ):
        if key not in meta:
            report.errors.append(f"front matter has no '{key}' ({why})")
    policy_id = meta.get("id")
    report.policy_id = None if policy_id is None else str(policy_id)
    if policy_id is not None and not POLICY_ID_PATTERN.match(str(policy_id)):
        report.errors.append(f"id {policy_id!r} must be lower-case letters, digits, '-' or '_'")
    output = meta.get("output")
    if output is not None and output not in OUTPUT_FORMATS:
        report.errors.append(f"output {output!r} must be one of {', '.join(OUTPUT_FORMATS)}")
    if not body.strip():
        report.errors.append("the policy body (the text sent to the model) is empty")
        return report

    sections = _sections(body)
    missing = [name for name, words in SECTIONS.items() if _find(sections, words) is None]
    for name in missing:
        report.warnings.append(f"no '{name}' section (OpenAI's guide recommends one)")

    output_heading = _find(sections, SECTIONS["output format"])
    stated = sections.get(output_heading, "") if output_heading else ""
    if output == "binary" and not ("0" in stated and "1" in stated):
        report.errors.append(
            "the text never states the output format: an 'Output format' section must tell "
            "the model to answer 0 or 1"
        )
    if output == "json" and not ("violation" in stated and "{" in stated):
        report.errors.append(
            "the text never states the output format: an 'Output format' section must show "
            'the JSON object, with "violation"'
        )

    examples_heading = _find(sections, SECTIONS["examples"])
    example_text = sections.get(examples_heading, "") if examples_heading else ""
    labels = [m.group(2) for m in map(_LABELLED_EXAMPLE.search, example_text.splitlines()) if m]
    report.examples = len(labels)
    low, high = EXAMPLES_RECOMMENDED
    if not labels:
        report.errors.append(
            "no labelled examples (lines such as '- \"text\" -> 1' under an Examples heading)"
        )
    elif not low <= len(labels) <= high:
        report.warnings.append(f"{len(labels)} labelled examples; the guide suggests {low}-{high}")
    if labels and set(labels) != {"0", "1"}:
        report.warnings.append("the examples show only one label; give both 0 and 1")

    try:
        report.tests = len(policy_test_cases(meta, str(path)))
    except PolicyError as exc:
        report.errors.append(str(exc).split(": ", 1)[-1])

    try:
        report.tokens = token_count(body)
    except Exception as exc:  # noqa: BLE001 - the vocabulary may be missing; say so, go on
        report.warnings.append(f"token count unavailable: {exc}")
        return report
    low, high = TOKEN_SWEET_SPOT
    if report.tokens > TOKEN_CEILING:
        report.warnings.append(
            f"{report.tokens} tokens: above ~{TOKEN_CEILING}, where the guide says quality drops"
        )
    elif not low <= report.tokens <= high:
        report.warnings.append(f"{report.tokens} tokens; the guide's sweet spot is {low}-{high}")
    return report


def lint_text(report: LintReport) -> str:
    verdict = "ok" if report.ok else f"{len(report.errors)} error(s)"
    head = f"{report.path}: {verdict}"
    details = ", ".join(
        part
        for part in (
            f"{report.tokens} tokens" if report.tokens is not None else None,
            f"{report.examples} labelled examples",
            f"{report.tests} test cases",
        )
        if part
    )
    lines = [f"{head} ({details})"]
    lines += [f"  error: {e}" for e in report.errors]
    lines += [f"  warning: {w}" for w in report.warnings]
    return "\n".join(lines)


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
    from batch.render import render_prefix
    from batch.vocab import VocabError

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


def run_policy_tests(
    policies: list[Policy],
    engine: Any,
    model: str,
    model_fingerprint: str,
    reasoning_effort: str,
    sampling: Any,
    max_model_len: int | None,
) -> list[CaseResult]:
    """Label each policy's own test cases through the full job (render, engine, parse)."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    from batch.pipeline import JobConfig, run_label_job
    from batch.read import inspect_inputs

    results: list[CaseResult] = []
    with tempfile.TemporaryDirectory(prefix="policy-test-") as tmp:
        for policy in policies:
            cases = policy_test_cases(policy.meta, policy.path)
            if not cases:
                continue
            shard = Path(tmp) / f"{policy.id}.parquet"
            pq.write_table(
                pa.table(
                    {"id": [str(n) for n in range(len(cases))], "text": [c["text"] for c in cases]}
                ),
                shard,
            )
            files, _ = inspect_inputs([str(shard)], "id", "text", False)
            out = Path(tmp) / f"out-{policy.id}"
            config = JobConfig(
                inputs=files,
                policies=[policy],
                output=str(out),
                model=model,
                model_fingerprint=model_fingerprint,
                reasoning_effort=reasoning_effort,
                sampling=sampling,
                max_model_len=max_model_len,
                reuse=False,
                command=["safeguard-batch", "policy", "test"],
            )
            run_label_job(config, engine)
            rows = ds.dataset(str(out), format="parquet", partitioning="hive").to_table()
            by_row = {r["source_row"]: r for r in rows.to_pylist()}
            for number, case in enumerate(cases):
                row = by_row[number]
                passed = row["status"] == "ok" and row["label"] == str(case["expected"])
                results.append(
                    CaseResult(
                        policy.id,
                        number + 1,
                        case["text"],
                        int(case["expected"]),
                        row["label"],
                        row["status"],
                        passed,
                        row["rationale"] or row["reasoning"],
                        row["error"],
                    )
                )
    return results


def format_test_results(results: list[CaseResult]) -> str:
    lines = []
    for r in results:
        mark = "PASS" if r.passed else "FAIL"
        got = r.label if r.status == "ok" else r.status
        lines.append(
            f"{mark} {r.policy_id} #{r.number}: expected {r.expected}, got {got}: {r.text[:70]!r}"
        )
        if not r.passed:
            why = r.rationale or r.error or "(no rationale)"
            lines.append(f"     model's reasoning: {' '.join(why.split())[:300]}")
    passed = sum(r.passed for r in results)
    lines.append(f"{passed}/{len(results)} test cases passed")
    return "\n".join(lines)
