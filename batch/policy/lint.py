"""policy lint: what makes a policy unusable (errors) or weaker than OpenAI's guide
recommends (warnings), and the test cases in its front matter::

    [[tests]]
    text = "WINNER! Claim your prize, text WIN to 80086"
    expected = 1
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from batch.policy.files import (
    OUTPUT_FORMATS,
    POLICY_ID_PATTERN,
    PolicyError,
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
    from batch.vocab import load_encoding

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


def _check_front_matter(report: LintReport, meta: dict[str, Any]) -> None:
    for key, why in (
        ("id", "names the output partition"),
        ("version", "is recorded on every label"),
        ("output", f"the output format the job parses: one of {', '.join(OUTPUT_FORMATS)}"),
    ):
        if key not in meta:
            report.errors.append(f"front matter has no '{key}' ({why})")
    policy_id = meta.get("id")
    report.policy_id = None if policy_id is None else str(policy_id)
    if policy_id is not None and not POLICY_ID_PATTERN.fullmatch(str(policy_id)):
        report.errors.append(f"id {policy_id!r} must be lower-case letters, digits, '-' or '_'")
    output = meta.get("output")
    if output is not None and output not in OUTPUT_FORMATS:
        report.errors.append(f"output {output!r} must be one of {', '.join(OUTPUT_FORMATS)}")


def _check_sections(report: LintReport, sections: dict[str, str], output: Any) -> None:
    """The guide's sections, and an output format the text actually states."""
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


def _check_examples(report: LintReport, sections: dict[str, str]) -> None:
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


def _check_tokens(report: LintReport, body: str) -> None:
    try:
        report.tokens = token_count(body)
    except Exception as exc:  # noqa: BLE001 - the vocabulary may be missing; say so, go on
        report.warnings.append(f"token count unavailable: {exc}")
        return
    low, high = TOKEN_SWEET_SPOT
    if report.tokens > TOKEN_CEILING:
        report.warnings.append(
            f"{report.tokens} tokens: above ~{TOKEN_CEILING}, where the guide says quality drops"
        )
    elif not low <= report.tokens <= high:
        report.warnings.append(f"{report.tokens} tokens; the guide's sweet spot is {low}-{high}")


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
    _check_front_matter(report, meta)
    if not body.strip():
        report.errors.append("the policy body (the text sent to the model) is empty")
        return report
    sections = _sections(body)
    _check_sections(report, sections, meta.get("output"))
    _check_examples(report, sections)
    try:
        report.tests = len(policy_test_cases(meta, str(path)))
    except PolicyError as exc:
        report.errors.append(str(exc).split(": ", 1)[-1])
    _check_tokens(report, body)
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
