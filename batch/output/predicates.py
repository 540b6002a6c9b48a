"""Predicates over the label table, in SQL for delta-rs (MERGE, DELETE) and as polars
expressions for reads: values quoted safely, and rows given as a few ranges per source file,
which the log's per-file statistics can prune by."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def sql_literal(value: Any) -> str:
    """One value as a SQL literal: a string quoted (quotes doubled), a number as it is."""
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(int(value))


def sql_list(values: Iterable[Any]) -> str:
    """Values as a SQL list: strings quoted (quotes doubled), numbers as they are."""
    return ", ".join(sql_literal(value) for value in values)


RowRanges = dict[str, list[tuple[int, int]]]  # source file -> closed ranges of source rows
_RANGE_GAP = 4096  # rows closer than this share a range: fewer, slightly wider ranges
_MOST_RANGES = 32  # per file; beyond it the closest ranges merge


def row_ranges(files: Sequence[str], rows: Sequence[int]) -> RowRanges:
    """The rows of each file as a few closed ranges (a commit holds a few chunks of a file,
    so a few ranges cover it), for predicates the log's statistics can prune by."""
    by_file: dict[str, list[int]] = {}
    for source_file, row in zip(files, rows, strict=True):
        by_file.setdefault(source_file, []).append(int(row))
    ranges: RowRanges = {}
    for source_file, values in by_file.items():
        values.sort()
        spans = [[values[0], values[0]]]
        for value in values[1:]:
            if value - spans[-1][1] <= _RANGE_GAP:
                spans[-1][1] = value
            else:
                spans.append([value, value])
        while len(spans) > _MOST_RANGES:  # merge across the smallest gap
            gap = min(range(len(spans) - 1), key=lambda i: spans[i + 1][0] - spans[i][1])
            spans[gap : gap + 2] = [[spans[gap][0], spans[gap + 1][1]]]
        ranges[source_file] = [(low, high) for low, high in spans]
    return ranges


def ranges_predicate(ranges: RowRanges, alias: str = "") -> str:
    """``(file = f AND row BETWEEN ...) OR ...`` in SQL: what delta-rs prunes files by."""
    prefix = f"{alias}." if alias else ""
    terms = [
        f"({prefix}source_file = {sql_literal(source_file)} AND {prefix}source_row >= {low} "
        f"AND {prefix}source_row <= {high})"
        for source_file, spans in sorted(ranges.items())
        for low, high in spans
    ]
    return "(" + " OR ".join(terms) + ")"


def ranges_filter(ranges: RowRanges):
    """The same rows as a polars expression."""
    import polars as pl

    terms = [
        (pl.col("source_file") == source_file) & pl.col("source_row").is_between(low, high)
        for source_file, spans in sorted(ranges.items())
        for low, high in spans
    ]
    expression = terms[0]
    for term in terms[1:]:
        expression = expression | term
    return expression
