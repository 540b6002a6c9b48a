"""Reading labels back: the table's current rows (or those of an earlier version), as polars.

The table's current version holds one label per (source row, policy); ``version`` reads an
earlier one (time travel) until it is vacuumed. ``latest_per`` picks one row per other key
(an id can occur in several rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from batch.output.table import LabelTable, TableError


def scan_labels(output: str | Path, version: int | None = None) -> pl.LazyFrame:
    """The labels of ``output`` at ``version`` (default: now); empty if it holds no table."""
    return LabelTable(output).scan(version)


def require_table(output: str | Path) -> LabelTable:
    """The output's table, or a :class:`TableError` saying there is none to read."""
    table = LabelTable(output)
    if not table.exists():
        table.open()  # explains what is there instead (old layout, foreign files)
        raise TableError(f"{output}: holds no label table (no _delta_log)")
    return table


def latest_per(labels: pl.LazyFrame, keys: Sequence[str]) -> pl.LazyFrame:
    """The most recently labelled row for each value of ``keys``."""
    return labels.sort("labelled_at", maintain_order=True).unique(
        subset=list(keys), keep="last", maintain_order=True
    )
