"""The label store: where an earlier ``ok`` model label of the same content lies, so identical
work is never redone.

A label can be carried over to another row when everything that defines it matches: the
content (``content_sha256``), the policy bytes, the rendered prompt, the model fingerprint and
the generation settings (``settings_sha256``, which includes the parser version). Only ``ok``
labels the model gave are kept (a prefilter's 0 is not the model's verdict; failures are
retried instead).

The store keeps a **pointer** per label, not the label: (work, first 16 bytes of the content
hash) -> (source file, source row, table version) of the row that holds it, 32 bytes a slot
in a hash table on disk (``output.pointers``: 46 to 91 bytes a label as it fills), whatever
the length of the reasoning; a lookup or an insert costs the same at any size. The labels
found are read from the table (pruned to the rows pointed at) and checked against the work key
and the full content hash there, so a pointer can miss, never give a wrong label: the table
stays the one truth. A row relabelled since (other settings, then the old ones again) is read
from the version that wrote it, as long as time travel reaches it (until ``vacuum``). Work
keys and source files get small ids in the index's SQLite.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from batch.output.failures import writing
from batch.output.index import Index
from batch.output.pointers import NO_VERSION, PointerFile
from batch.output.schema import OK

if TYPE_CHECKING:  # pragma: no cover
    from batch.output.table import LabelTable

STORE_VERSION = "3"  # 1: label columns as JSON; 2: pointers in SQLite; 3: a pointer file
_TABLES = """
CREATE TABLE IF NOT EXISTS works (
    id INTEGER PRIMARY KEY, policy_id TEXT, digest BLOB, UNIQUE (policy_id, digest));
CREATE TABLE IF NOT EXISTS sources (id INTEGER PRIMARY KEY, source_file TEXT UNIQUE);
"""
_OLD_TABLES = ("labels", "labels_recent", "pointers", "pointers_recent")  # versions 1 and 2
_LOOKUP_CHUNK = 500  # parameters per IN (...) query
_CONTENT_BYTES = 16  # of the content's sha256: the full hash is checked in the table
_OLD_VERSIONS = 8  # earlier table versions one lookup reads at most (time travel)
POINTER_FILE = "pointers.bin"
Where = tuple[str, int, int | None]  # source file, source row, table version

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
WORK_COLUMNS = ("policy_sha256", "prompt_sha256", "model_fingerprint", "settings_sha256")
_CHECKED = ("source_file", "source_row", "content_sha256", *WORK_COLUMNS)


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

    @property
    def columns(self) -> tuple[str, str, str, str]:
        """The key's values in the order of ``WORK_COLUMNS``."""
        return (
            self.policy_sha256,
            self.prompt_sha256,
            self.model_fingerprint,
            self.settings_sha256,
        )


def reusable(status: str | None, content: str | None, decided_by: str | None) -> bool:
    """An ``ok`` label the model gave for known content: another row may carry it over."""
    return status == OK and content is not None and decided_by in (None, "model")


def _content(digest: str) -> bytes:
    return bytes.fromhex(digest[: 2 * _CONTENT_BYTES])


class LabelStore:
    """Looks up and records where earlier ``ok`` labels lie, by content hash, per work key."""

    def __init__(self, index: Index, table: LabelTable | None = None) -> None:
        self.index = index
        self.table = table
        self.db = index.db
        self._works: dict[tuple[str, bytes], int] = {}
        self._sources: dict[str, int] = {}
        self._names: dict[int, str] = {}
        with writing(index.path, "the index"):
            self._upgrade()
            self.db.executescript(_TABLES)
            self.pointers = PointerFile(index.path.parent / POINTER_FILE)

    def _upgrade(self) -> None:
        """Drop a store of an older version (``needs_refill`` then says so)."""
        names = {row[0] for row in self.db.execute("SELECT name FROM sqlite_master")}
        old = [name for name in _OLD_TABLES if name in names]
        for name in old:
            self.db.execute(f"DROP TABLE {name}")
        if old:
            self.db.execute("VACUUM")

    def needs_refill(self) -> bool:
        """The store is not (yet) of this version: its pointers must come from the table."""
        return self.index.meta("store_version") != STORE_VERSION

    def filled(self) -> None:
        """The store now points at every reusable label the table held."""
        self.index.set_meta("store_version", STORE_VERSION)

    def _work_id(self, key: WorkKey, create: bool) -> int | None:
        name = (key.policy_id, key.digest)
        if name not in self._works:
            query = "SELECT id FROM works WHERE policy_id = ? AND digest = ?"
            row = self.db.execute(query, name).fetchone()
            if row is None and not create:
                return None
            if row is None:
                with self.index.transaction():
                    insert = "INSERT OR IGNORE INTO works (policy_id, digest) VALUES (?, ?)"
                    self.db.execute(insert, name)
                row = self.db.execute(query, name).fetchone()
            self._works[name] = int(row[0])
        return self._works[name]

    def _source_ids(self, files: Iterable[str]) -> dict[str, int]:
        new = sorted(set(files) - self._sources.keys())
        if new:
            with self.index.transaction():
                self.db.executemany(
                    "INSERT OR IGNORE INTO sources (source_file) VALUES (?)", [(f,) for f in new]
                )
            for start in range(0, len(new), _LOOKUP_CHUNK):
                part = new[start : start + _LOOKUP_CHUNK]
                marks = ", ".join("?" * len(part))
                query = f"SELECT source_file, id FROM sources WHERE source_file IN ({marks})"
                self._sources.update(self.db.execute(query, part))
        return self._sources

    def _source_names(self, ids: Iterable[int]) -> dict[int, str]:
        new = sorted(set(ids) - self._names.keys())
        for start in range(0, len(new), _LOOKUP_CHUNK):
            part = new[start : start + _LOOKUP_CHUNK]
            marks = ", ".join("?" * len(part))
            query = f"SELECT id, source_file FROM sources WHERE id IN ({marks})"
            self._names.update(self.db.execute(query, part))
        return self._names

    def locate(self, key: WorkKey, digests: Iterable[str]) -> dict[str, Where]:
        """Where a label of each content hash lies under ``key``: (source file, row, the
        table version that wrote it)."""
        work = self._work_id(key, create=False)
        if work is None:
            return {}
        wanted = {(work, _content(d)): d for d in digests if d}
        found = self.pointers.get(wanted)
        names = self._source_names(source for source, _, _ in found.values())
        return {
            wanted[k]: (names[source], row, None if version == NO_VERSION else version)
            for k, (source, row, version) in found.items()
            if source in names
        }

    def fetch(self, key: WorkKey, digests: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The label columns of an earlier ``ok`` label for each content hash that has one
        under ``key``, read from the table and checked against it."""
        located = self.locate(key, digests)
        if not located or self.table is None:
            return {}
        out = self._read(key, located, None)
        earlier: dict[int, dict[str, Where]] = {}
        for digest, where in located.items():
            if digest not in out and where[2] is not None:
                earlier.setdefault(where[2], {})[digest] = where
        for version in sorted(earlier, reverse=True)[:_OLD_VERSIONS]:
            out.update(self._read(key, earlier[version], version))
        return out

    def _read(
        self, key: WorkKey, located: dict[str, Where], version: int | None
    ) -> dict[str, dict[str, Any]]:
        """The labels pointed at, from the table now (or at ``version``), where the row there
        still holds that content's label under ``key``."""
        from batch.output.predicates import row_ranges
        from batch.output.table import TableError

        assert self.table is not None
        files = [where[0] for where in located.values()]
        rows = [where[1] for where in located.values()]
        columns = list(dict.fromkeys([*_CHECKED, "decided_by", *LABEL_COLUMNS]))
        ranges = row_ranges(files, rows)
        try:
            found = self.table.current(files, [key.policy_id], columns, ranges, version)
        except TableError:  # that version is gone (vacuumed, log cleaned up): a miss
            return {}
        wanted = {where[:2]: digest for digest, where in located.items()}
        out: dict[str, dict[str, Any]] = {}
        for row in found.to_pylist():
            digest = wanted.get((row["source_file"], row["source_row"]))
            if (
                digest is None
                or row["content_sha256"] != digest
                or tuple(row[c] for c in WORK_COLUMNS) != key.columns
                or not reusable(row["status"], row["content_sha256"], row["decided_by"])
            ):
                continue  # relabelled since the pointer was written: a miss
            out[digest] = {c: row[c] for c in LABEL_COLUMNS}
        return out

    def add(
        self, key: WorkKey, entries: Iterable[tuple[str, str, int]], version: int | None
    ) -> None:
        """Point at the reusable rows a commit just wrote (call it after the commit):
        ``(content hash, source file, source row)`` of each, and the commit's version."""
        entries = list(entries)
        if not entries:
            return
        with writing(self.pointers.path, "the label store"):
            work = self._work_id(key, create=True)
            assert work is not None
            sources = self._source_ids(f for _, f, _ in entries)
            stamp = NO_VERSION if version is None else version
            self.pointers.put(
                ((work, _content(d)), (sources[f], int(r), stamp)) for d, f, r in entries
            )

    def reserve(self, labels: int) -> None:
        """Make room for ``labels`` more pointers now, before a run starts adding them."""
        with writing(self.pointers.path, "the label store"):
            self.pointers.reserve(labels)

    def disk_bytes(self) -> int:
        """What the pointers take on disk."""
        return self.pointers.disk_bytes()
