"""Write failures as one clear error: which path, what failed, and that nothing is half done.

A full disk (``ENOSPC``), a read-only filesystem (``EROFS``), a file-size limit (``EFBIG``)
or a broken SQLite file surface from pyarrow, delta-rs or sqlite3 in many shapes; here each
becomes an :class:`~batch.errors.OutputError` (exit 6). Delta commits and the JSON files'
renames are atomic, so what a failed write leaves is never visible as data.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from batch.errors import OutputError


def _cause(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} (errno {exc.errno})"
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _is_write_failure(exc: BaseException) -> bool:
    if isinstance(exc, OSError | sqlite3.Error):
        return True
    try:
        from deltalake.exceptions import CommitFailedError, DeltaError
    except ImportError:  # pragma: no cover - deltalake is a dependency
        return False
    return isinstance(exc, DeltaError) and not isinstance(exc, CommitFailedError)


@contextmanager
def writing(path: str | Path, what: str) -> Iterator[None]:
    """Turn a failure to write ``what`` at ``path`` into an :class:`OutputError`."""
    try:
        yield
    except OutputError:
        raise
    except Exception as exc:
        if not _is_write_failure(exc):
            raise
        raise OutputError(f"{path}: cannot write {what}: {_cause(exc)}") from exc
