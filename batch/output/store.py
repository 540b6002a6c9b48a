"""The label store: earlier ``ok`` model labels, found by content, so identical work is never
redone.

A label can be carried over to another row when everything that defines it matches: the
content (``content_sha256``), the policy bytes, the rendered prompt, the model fingerprint and
the generation settings (``settings_sha256``, which includes the parser version). Only ``ok``
labels the model gave are kept (a prefilter's 0 is not the model's verdict; failures are
retried instead). They live in the output's index (SQLite, on disk), added after each commit,
so a lookup costs a B-tree probe per content, whatever the size of the history.

New labels go to a small ``labels_recent`` table, so a night's inserts touch few pages
whatever the size of the history; ``fold`` moves them, sorted, into ``labels`` (``compact``
does it, and a run does when the recent table has grown past ``FOLD_ROWS``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from batch.output.failures import writing
from batch.output.index import Index
from batch.output.schema import OK

_TABLES = """
CREATE TABLE IF NOT EXISTS labels (
    work BLOB, content BLOB, label TEXT, PRIMARY KEY (work, content)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS labels_recent (
    work BLOB, content BLOB, label TEXT, PRIMARY KEY (work, content)) WITHOUT ROWID;
"""
_LOOKUP_CHUNK = 500  # parameters per IN (...) query
FOLD_ROWS = 1_000_000

# Columns a carried-over row takes from the row it copies; the rest describe the new row.
LABEL_COLUMNS = (
    "label",
    "violation",
    "score",
    "policy_category",
    "rationale",
    "reasoning",
    "status",
    "error",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "seed",
    "attempt",
    "decided_by",
    "prefilter_score",
    "prefilter_audit",
    "run_id",
    "labelled_at",
)


@dataclass(frozen=True)
class WorkKey:
    """Everything besides the content that a label depends on."""

    policy_id: str
    policy_sha256: str
    prompt_sha256: str
    model_fingerprint: str
    settings_sha256: str

    @property
    def digest(self) -> bytes:
        parts = (
            self.policy_sha256,
            self.prompt_sha256,
            self.model_fingerprint,
            self.settings_sha256,
        )
        return hashlib.sha256("|".join(parts).encode()).digest()[:16]


def _reusable(row: dict[str, Any]) -> bool:
    return (
        row["status"] == OK
        and row["content_sha256"] is not None
        and row.get("decided_by") in (None, "model")
    )


def _encode(row: dict[str, Any]) -> str:
    values = {c: row.get(c) for c in LABEL_COLUMNS}
    values["labelled_at"] = row["labelled_at"].isoformat()
    return json.dumps(values, separators=(",", ":"))


def _decode(text: str) -> dict[str, Any]:
    values = json.loads(text)
    values.setdefault("score", None)  # stored before scores existed
    values["labelled_at"] = datetime.fromisoformat(values["labelled_at"])
    return values


class LabelStore:
    """Looks up and records earlier ``ok`` labels by content hash, per work key."""

    def __init__(self, index: Index) -> None:
        self.index = index
        self.db = index.db
        with writing(index.path, "the index"):
            self.db.executescript(_TABLES)

    def _lookup(self, table: str, work: bytes, contents: list[bytes]) -> dict[bytes, str]:
        found: dict[bytes, str] = {}
        for start in range(0, len(contents), _LOOKUP_CHUNK):
            part = contents[start : start + _LOOKUP_CHUNK]
            marks = ", ".join("?" * len(part))
            query = f"SELECT content, label FROM {table} WHERE work = ? AND content IN ({marks})"
            found.update(self.db.execute(query, [work, *part]))
        return found

    def fetch(self, key: WorkKey, digests: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored label columns for each content hash that has them under ``key``."""
        wanted = sorted({bytes.fromhex(d) for d in digests})
        found = self._lookup("labels_recent", key.digest, wanted)
        rest = [c for c in wanted if c not in found]
        found.update(self._lookup("labels", key.digest, rest) if rest else {})
        return {content.hex(): _decode(text) for content, text in found.items()}

    def add(self, key: WorkKey, rows: Iterable[dict[str, Any]]) -> None:
        """Record the reusable rows a commit just wrote (call it after the commit)."""
        entries = [
            (key.digest, bytes.fromhex(row["content_sha256"]), _encode(row))
            for row in rows
            if _reusable(row)
        ]
        if entries:
            with self.index.transaction():
                self.db.executemany(
                    "INSERT OR REPLACE INTO labels_recent VALUES (?, ?, ?)", entries
                )

    def recent_rows(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM labels_recent").fetchone()[0])

    def fold(self) -> int:
        """Move the recent labels into the main table, in key order; how many moved."""
        with self.index.transaction():
            moved = self.db.execute(
                "INSERT OR REPLACE INTO labels SELECT * FROM labels_recent ORDER BY work, content"
            ).rowcount
            self.db.execute("DELETE FROM labels_recent")
        return int(moved)
