"""The output's index: what a run needs to know without reading the table or the inputs.

SQLite at ``OUT/_index/index.sqlite`` (standard library, on disk, updated in place; for a
table on an object store, in the table's local cache folder, ``output.place``):

- ``files``: per source file (its identity), the size, modification time, sha256 and row count
  last seen, so an unchanged file is known without reading it;
- ``progress``: per (source file, policy), that the table holds rows for it, and whether every
  row holds a final label under a given work key and file sha256 (then the file is skipped),
  with the table history the mark was made in (``Mark``, ``output.history``);
- the label store's ids for work keys and source files (its pointers are in
  ``pointers.bin`` beside it, ``output.pointers``).

It is derived data, written just after each table commit. Losing it, damaging it (a damaged
index is set aside and rebuilt from the table), or a kill between a commit and its index
update, costs model work, never correctness: every table write is an upsert.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from batch.output.failures import writing
from batch.output.history import Seen
from batch.output.place import local_folder

INDEX_DIR = "_index"
log = logging.getLogger(__name__)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    source_file TEXT PRIMARY KEY, path TEXT, size INTEGER, mtime_ns INTEGER,
    sha256 TEXT, rows INTEGER, etag TEXT);
CREATE TABLE IF NOT EXISTS progress (
    source_file TEXT, policy_id TEXT, work TEXT, sha256 TEXT, complete INTEGER,
    seen INTEGER, epoch INTEGER, PRIMARY KEY (source_file, policy_id));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""


@dataclass(frozen=True)
class FileRecord:
    source_file: str
    path: str
    size: int
    mtime_ns: int
    sha256: str
    rows: int
    etag: str = ""  # an object's ETag (object storage); "" for a local file


@dataclass(frozen=True)
class Progress:
    work: str
    sha256: str
    complete: bool
    seen: int | None = None  # the table version the run that marked it planned from
    epoch: int | None = None  # the table's history it was marked in (``Index.epoch``)


@dataclass(frozen=True)
class Mark:
    """What a run knew of the table when it planned: marks it writes hold only as long as
    nothing outside this tool changed the table after ``seen``, in this ``epoch``."""

    seen: int
    epoch: int


def index_path(output: str | Path) -> Path:
    """``OUT/_index/index.sqlite``; for a table on a store, the same under its local cache
    folder (``output.place``)."""
    return local_folder(output) / INDEX_DIR / "index.sqlite"


class Index:
    """One process's connection to an output's index."""

    @classmethod
    def if_exists(cls, output: str | Path) -> Index | None:
        """The index of an output that has one; None leaves a new output folder untouched."""
        return cls(output) if index_path(output).is_file() else None

    def __init__(self, output: str | Path) -> None:
        path = self.path = index_path(output)
        with writing(path, "the index"):
            try:
                self._connect(path)
            except sqlite3.DatabaseError as exc:  # not a database, or a damaged one
                if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                    raise
                self._set_aside(path, exc)
                self._connect(path)

    def _set_aside(self, path: Path, exc: Exception) -> None:
        """A damaged index is derived data: keep it aside for a look, start a new one (the
        table refills it, one scan)."""
        with contextlib.suppress(Exception):
            self.db.close()
        stamp = time.strftime("%Y%m%dT%H%M%S")
        for name in (path.name, path.name + "-wal", path.name + "-shm"):
            damaged = path.with_name(name)
            if damaged.exists():
                damaged.rename(path.with_name(f"{name}.damaged-{stamp}"))
        log.warning("%s was damaged (%s): set aside, rebuilding it from the table", path, exc)

    def _connect(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # One connection per process, used by one thread at a time (a Ray actor calls it from
        # another thread than the one that built it).
        self.db = sqlite3.connect(path, timeout=120, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA busy_timeout = 120000")
        # A filesystem without shared memory refuses WAL: stay on the rollback journal then.
        with contextlib.suppress(sqlite3.OperationalError):
            self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = NORMAL")
        check = self.db.execute("PRAGMA quick_check").fetchone()  # small: pointers are apart
        if check is None or check[0] != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {check[0] if check else 'no answer'}")
        self.db.executescript(_SCHEMA)
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(progress)")}
        for column in ("seen", "epoch"):  # an index made before marks named their history
            if column not in columns:
                self.db.execute(f"ALTER TABLE progress ADD COLUMN {column} INTEGER")
        if "etag" not in {row[1] for row in self.db.execute("PRAGMA table_info(files)")}:
            self.db.execute("ALTER TABLE files ADD COLUMN etag TEXT")  # before object storage

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction; a failure rolls it back and names the index."""
        with writing(self.path, "the index"):
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def file(self, source_file: str) -> FileRecord | None:
        row = self.db.execute(
            "SELECT source_file, path, size, mtime_ns, sha256, rows, etag FROM files "
            "WHERE source_file = ?",
            (source_file,),
        ).fetchone()
        return FileRecord(*row[:6], row[6] or "") if row else None

    def record_files(self, records: Iterable[FileRecord]) -> None:
        rows = [
            (r.source_file, r.path, r.size, r.mtime_ns, r.sha256, r.rows, r.etag) for r in records
        ]
        insert = (
            "INSERT OR REPLACE INTO files (source_file, path, size, mtime_ns, sha256, rows, etag) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)"
        )
        with self.transaction():
            self.db.executemany(insert, rows)

    def progress(self, source_file: str, policy_id: str) -> Progress | None:
        row = self.db.execute(
            "SELECT work, sha256, complete, seen, epoch FROM progress "
            "WHERE source_file = ? AND policy_id = ?",
            (source_file, policy_id),
        ).fetchone()
        return Progress(row[0], row[1], bool(row[2]), row[3], row[4]) if row else None

    def record_progress(
        self, entries: Iterable[tuple[str, str, str, str, bool]], mark: Mark | None = None
    ) -> None:
        """(source file, policy, work, file sha256, complete) for pairs the table now holds;
        ``mark``: what the run that says "complete" knew of the table (required for it)."""
        seen, epoch = (mark.seen, mark.epoch) if mark is not None else (None, None)
        with self.transaction():
            self.db.executemany(
                "INSERT OR REPLACE INTO progress VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(f, p, w, s, int(c and mark is not None), seen, epoch)
                 for f, p, w, s, c in entries],
            )  # fmt: skip

    def valid(self, progress: Progress) -> bool:
        """A completeness mark that still holds: made in this epoch of the table's history,
        from a version no foreign change came after."""
        if not progress.complete or progress.seen is None or progress.epoch != self.epoch():
            return False
        return progress.seen >= self.foreign_version()

    def epoch(self) -> int:
        return int(self.meta("epoch") or 0)

    def foreign_version(self) -> int:
        """The newest table version another writer changed data at (-1: none seen)."""
        return int(self.meta("foreign_version") or -1)

    def saw_foreign(self, version: int) -> None:
        with self.transaction():
            old = self.db.execute("SELECT value FROM meta WHERE key = 'foreign_version'").fetchone()
            newest = max(version, int(old[0]) if old else -1)
            self.db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('foreign_version', ?)", (str(newest),)
            )

    def went_back(self) -> None:
        """The table's history is not the one the marks were made in: none of them holds."""
        with self.transaction():
            self.db.execute("UPDATE progress SET complete = 0")
            self.db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('epoch', ?)", (str(self.epoch() + 1),)
            )

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def committed(self, read: int, made: Seen) -> None:
        """This tool moved the table from version ``read`` to ``made``: if the index had
        checked up to ``read``, it has checked up to ``made`` (its own commit is no foreign
        change), so a later rollback below it is seen. Else the next check scans."""
        checked = self.meta("checked") or ""
        if made.version == read + 1 and checked.split(":", 1)[0] == str(read):
            self.set_meta("checked", made.to_text())

    def checked(self) -> str | None:
        """The table state (``history.Seen``) the last run checked the marks against."""
        return self.meta("checked")
