"""Naming conventions an input's files follow, wherever they are stored."""

from __future__ import annotations

from pathlib import PurePosixPath

PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")


def hidden(name: str) -> bool:
    """Spark, Hive and Delta's convention: ``_SUCCESS``, ``_delta_log``, ``.part-0.crc``..."""
    return name.startswith((".", "_"))


def is_parquet(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in PARQUET_SUFFIXES
