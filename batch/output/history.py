"""Is the table's history since a version still the one a completeness mark was computed on?

A mark says "every row of this (file, policy) holds a final label" as of a table version. It
stays true while only this tool writes (its upserts replace labels, never drop them; a file's
vanished rows go only with a change of its bytes) or while other writers only rearrange data
(OPTIMIZE, VACUUM). It is false after a commit of another writer that changed data (a DELETE
by hand, a RESTORE; for a table on an object store, also this tool on another machine, whose
cache of the table is not this one), and after the table went back (newest log entries
deleted, a restore from an older backup): then the version the mark names is another
commit, or none.

A version is remembered with the identity of its commit (a hash of its commit info), so a
table that went back and forward again to the same number is told apart.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from batch.output import place

if TYPE_CHECKING:  # pragma: no cover
    from batch.output.table import LabelTable

TOOL = "safeguard-batch"
# Operations of other writers that do not change what the table holds.
DATA_PRESERVING = ("OPTIMIZE", "VACUUM START", "VACUUM END", "CREATE CHECKPOINT")


@dataclass(frozen=True)
class Seen:
    """A table version and the identity of its commit."""

    version: int
    commit: str

    def to_text(self) -> str:
        return f"{self.version}:{self.commit}"

    @classmethod
    def from_text(cls, text: str | None) -> Seen | None:
        version, _, commit = (text or "").partition(":")
        return cls(int(version), commit) if version.lstrip("-").isdigit() and commit else None


def identity(entry: dict[str, Any]) -> str:
    """A commit's identity: what its commit info says, hashed."""
    data = {k: v for k, v in entry.items() if k != "version"}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def foreign(entry: dict[str, Any], cache: str | None = None) -> bool:
    """A commit that changed data without this tool; for a table on a store (``cache``: the
    id of this machine's cache of it), also one this tool made on another machine, which this
    cache did not record."""
    if entry.get("operation") in DATA_PRESERVING:
        return False
    return entry.get("tool") != TOOL or (cache is not None and entry.get("cache") != cache)


@dataclass(frozen=True)
class Since:
    """What happened to a table after a version: ``went_back`` (that version is not the same
    commit any more, or is gone), else the newest foreign commit's version, if any."""

    went_back: bool
    foreign_version: int | None
    now: Seen | None
    foreign_versions: tuple[int, ...] = ()  # every foreign commit's version, oldest first


def since(table: LabelTable, seen: Seen | None) -> Since:
    """The table's history after ``seen`` (None: not known, which is going back)."""
    latest = table.version()
    if latest is None:
        return Since(seen is not None, None, None)
    if seen is None or latest < seen.version:
        return Since(True, None, now(table))
    entries = table.open().history(limit=latest - seen.version + 1)
    by_version = {int(e["version"]): e for e in entries if "version" in e}
    anchor = by_version.get(seen.version)
    current = Seen(latest, identity(by_version[latest])) if latest in by_version else None
    if anchor is None or identity(anchor) != seen.commit:
        return Since(True, None, current)
    cache = place.cache_id(table.output)
    changed = [v for v, e in by_version.items() if v > seen.version and foreign(e, cache)]
    return Since(False, max(changed) if changed else None, current, tuple(sorted(changed)))


def now(table: LabelTable) -> Seen | None:
    """The table's current version and its commit's identity."""
    if not table.exists():
        return None
    entries = table.open().history(limit=1)
    if not entries or "version" not in entries[0]:
        return None
    return Seen(int(entries[0]["version"]), identity(entries[0]))
