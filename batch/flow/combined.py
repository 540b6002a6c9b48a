"""Several policies in one prompt (``--multi-policy combined``): one request per item.

OpenAI's guide notes that gpt-oss-safeguard can judge several policies in one prompt at a
small cost in accuracy. The developer message holds every policy, each in its own tagged
section, and asks for one JSON object with a verdict per policy id, each in that policy's own
output format. The answer is split back into ordinary per-policy rows, so the output looks
exactly like the default one-request-per-policy mode; ``prompt_sha256`` tells the two apart.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from batch.flow.parse import Verdict, read_completion, strip_code_fence, verdict_from_final
from batch.output.schema import PARSE_ERROR
from batch.policy.files import Policy

COMBINED_ID = "combined"

_FORMAT_HINT = {
    "binary": "0 or 1",
    "json": 'an object such as {"violation": 0, "policy_category": null, "rationale": "..."}',
}


def combined_text(policies: Sequence[Policy]) -> str:
    """The developer message that holds every policy and the combined output format."""
    ids = ", ".join(json.dumps(p.id) for p in policies)
    lines = [
        "# Combined content policies",
        "",
        f"Judge the user's content against each of the {len(policies)} policies below, "
        "independently: a violation of one policy says nothing about the others.",
        "",
        "## Output format",
        "",
        f"Answer with a single JSON object with exactly these keys: {ids}. "
        "The value for each key is the answer that policy asks for:",
    ]
    lines += [f"- {json.dumps(p.id)}: {_FORMAT_HINT[p.output]}" for p in policies]
    lines += ["", "Output only that JSON object.", ""]
    for policy in policies:
        lines += [f'<policy id="{policy.id}">', policy.text.strip(), "</policy>", ""]
    return "\n".join(lines)


def combined_policy(policies: Sequence[Policy]) -> Policy:
    """A pseudo-policy for rendering and seeding; its hash covers every member policy's hash."""
    digest = hashlib.sha256("|".join(p.sha256 for p in policies).encode()).hexdigest()
    return Policy(
        id=COMBINED_ID,
        version="+".join(f"{p.id}@{p.version}" for p in policies),
        output="json",
        text=combined_text(policies),
        sha256=digest,
        path="",
    )


def parse_combined(
    token_ids: Sequence[int], finish_reason: str | None, policies: Sequence[Policy]
) -> dict[str, Verdict]:
    """One verdict per policy from a combined answer; a policy missing from it is a parse error."""
    read = read_completion(token_ids, finish_reason)
    if isinstance(read, Verdict):
        return {p.id: read for p in policies}
    final, reasoning = read
    try:
        answer = json.loads(strip_code_fence(final))
    except json.JSONDecodeError as exc:
        failed = Verdict(
            PARSE_ERROR,
            reasoning=reasoning,
            error=f"combined answer is not JSON ({exc.msg}): {final[:80]!r}",
        )
        return {p.id: failed for p in policies}
    if not isinstance(answer, dict):
        failed = Verdict(
            PARSE_ERROR,
            reasoning=reasoning,
            error=f"combined answer is not an object: {final[:80]!r}",
        )
        return {p.id: failed for p in policies}
    verdicts = {}
    for policy in policies:
        if policy.id not in answer:
            verdicts[policy.id] = Verdict(
                PARSE_ERROR, reasoning=reasoning, error=f"combined answer lacks {policy.id!r}"
            )
            continue
        value = answer[policy.id]
        text = json.dumps(value) if isinstance(value, dict | list) else str(value)
        verdicts[policy.id] = verdict_from_final(text, reasoning, policy.output)
    return verdicts
