"""Policy files: TOML front matter for the job, Markdown body for the model.

A policy file looks like::

    +++
    id = "spam"
    version = "1"
    output = "binary"        # or "json"
    +++
    # Spam Policy
    ...

Only the body is sent to the model (as the harmony developer message). The hash we record,
``policy_sha256``, covers the file's exact bytes, so ``sha256sum policies/spam.md`` reproduces
it and any edit, front matter included, is visible in the output.
"""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batch.errors import UsageError
from batch.vocab import MAX_PIECE, encoding_pieces

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

OUTPUT_FORMATS = ("binary", "json")
FRONT_MATTER_FENCE = "+++"
POLICY_ID_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,63}")  # matched whole (fullmatch)


class PolicyError(UsageError):
    """A policy file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Policy:
    """One policy as the job uses it: what to send, how to read the answer, how to audit it."""

    id: str
    version: str
    output: str
    text: str
    sha256: str
    path: str
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (what ``sha256sum`` prints)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def split_front_matter(source: str, where: str = "<policy>") -> tuple[dict[str, Any], str]:
    """Split ``+++``-fenced TOML front matter from the body; both are required."""
    lines = source.splitlines(keepends=True)
    if not lines or lines[0].strip() != FRONT_MATTER_FENCE:
        raise PolicyError(f"{where}: must start with a '+++' line opening TOML front matter")
    for index in range(1, len(lines)):
        if lines[index].strip() == FRONT_MATTER_FENCE:
            header = "".join(lines[1:index])
            body = "".join(lines[index + 1 :])
            break
    else:
        raise PolicyError(f"{where}: front matter opened with '+++' is never closed")
    try:
        meta = tomllib.loads(header)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{where}: front matter is not valid TOML: {exc}") from exc
    return meta, body.strip("\n") + "\n"


def parse_policy(source: str, sha256: str, path: str = "<policy>") -> Policy:
    """Build a :class:`Policy` from file text, validating the fields the job relies on."""
    meta, body = split_front_matter(source, path)
    missing = [key for key in ("id", "version", "output") if key not in meta]
    if missing:
        raise PolicyError(f"{path}: front matter lacks {', '.join(missing)}")
    policy_id = str(meta["id"])
    if not POLICY_ID_PATTERN.fullmatch(policy_id):
        raise PolicyError(
            f"{path}: id {policy_id!r} must be lower-case letters, digits, '-' or '_', "
            "starting with a letter (it names an output partition)"
        )
    output = str(meta["output"])
    if output not in OUTPUT_FORMATS:
        raise PolicyError(f"{path}: output {output!r} must be one of {', '.join(OUTPUT_FORMATS)}")
    if not body.strip():
        raise PolicyError(f"{path}: the policy body (text after the front matter) is empty")
    _, hard = encoding_pieces(body)
    if hard:
        raise PolicyError(
            f"{path}: the policy holds {MAX_PIECE} characters without a word boundary (near "
            f"character {hard[0]}); a policy is prose, and the tokenizer's cost grows with the "
            "square of such a stretch"
        )
    return Policy(
        id=policy_id,
        version=str(meta["version"]),
        output=output,
        text=body,
        sha256=sha256,
        path=path,
        meta=meta,
    )


def load_policy(path: str | Path) -> Policy:
    """Read and validate one policy file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read policy file: {exc.strerror or exc}") from exc
    try:
        source = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{path}: policy file is not UTF-8: {exc}") from exc
    return parse_policy(source, hashlib.sha256(raw).hexdigest(), str(path))


def load_policies(paths: list[str | Path]) -> list[Policy]:
    """Load several policies; ids must be unique because they name output partitions."""
    policies = [load_policy(path) for path in paths]
    seen: dict[str, str] = {}
    for policy in policies:
        if policy.id in seen:
            raise PolicyError(
                f"policy id {policy.id!r} is used by both {seen[policy.id]} and {policy.path}"
            )
        seen[policy.id] = policy.path
    return policies
