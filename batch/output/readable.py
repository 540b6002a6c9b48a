"""Reading the label table, or failing to: a data file that cannot be read is one clear error
that names the output and the cure, never a traceback or a Rust panic."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from batch.errors import UsageError


class TableError(UsageError):
    """An output folder that is not a usable label table; the message says what to do."""


@contextmanager
def reading(output: str | Path, version: int | None = None) -> Iterator[None]:
    """Turn a data file polars cannot read (an error, or a Rust panic, which is not an
    Exception) into a :class:`TableError` that names the output and the cure (for an earlier
    ``version``: that vacuum removed it, where it did)."""
    import polars as pl

    try:
        yield
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        panic = type(exc).__name__ == "PanicException"  # pyo3_runtime.PanicException
        if not panic and not isinstance(exc, pl.exceptions.PolarsError | OSError):
            raise
        raise _unreadable(output, exc, version) from exc


@contextmanager
def rewriting(output: str | Path) -> Iterator[None]:
    """The same for a data file delta-rs cannot read while it rewrites (a MERGE, a DELETE):
    its error says "Parquet error"; every other failure is the write's own."""
    try:
        yield
    except Exception as exc:
        if type(exc).__name__ == "DeltaError" and "Parquet error" in str(exc):
            raise _unreadable(output, exc) from exc
        raise


def _unreadable(output: str | Path, exc: BaseException, version: int | None = None) -> TableError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if version is not None and _vacuumed(output):
        return TableError(
            f"{output}: version {version} can no longer be read: a vacuum removed data files it "
            f"needs ({type(exc).__name__}: {first}); time travel reaches only the versions its "
            "retention kept"
        )
    return TableError(
        f"{output}: a data file cannot be read ({type(exc).__name__}: {first}); "
        "restore it from a backup"
    )


def _vacuumed(output: str | Path) -> bool:
    try:
        from deltalake import DeltaTable

        return any(c.get("operation") == "VACUUM END" for c in DeltaTable(str(output)).history())
    except Exception:  # noqa: BLE001 - only a better message is at stake
        return False
