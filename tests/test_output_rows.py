"""Output rows kept as columns: the table they make is the one a row-by-row build would."""

from datetime import datetime, timezone

import pyarrow as pa

from batch.flow.rows import VARYING_COLUMNS, OutputRows
from batch.output.schema import OUTPUT_SCHEMA

WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
EARLIER = datetime(2025, 6, 7, 8, 9, 10, tzinfo=timezone.utc)


def _task(source_file: str, policy_id: str, run_id: str) -> dict:
    """Every non-varying column, as a task would give it."""
    values = {
        pa.types.is_string: source_file,
        pa.types.is_floating: 0.5,
        pa.types.is_integer: 64,
        pa.types.is_timestamp: WHEN,
    }
    columns = {}
    for schema_field in OUTPUT_SCHEMA:
        if schema_field.name in VARYING_COLUMNS:
            continue
        kind = next(v for test, v in values.items() if test(schema_field.type))
        columns[schema_field.name] = kind
    columns.update(policy_id=policy_id, run_id=run_id, reused_by_run_id=None)
    return columns


def _rows(task: dict, ids: list[str]) -> OutputRows:
    rows = OutputRows(shared=[task], task_of=[0] * len(ids))
    for name in VARYING_COLUMNS:
        rows.varying[name] = [None] * len(ids)
    rows.varying["id"] = ids
    rows.varying["status"] = ["ok"] * len(ids)
    rows.varying["attempt"] = [1] * len(ids)
    rows.varying["origin"] = ["model"] * len(ids)
    rows.varying["decided_by"] = ["model"] * len(ids)
    rows.varying["source_row"] = list(range(len(ids)))
    return rows


def test_rows_of_several_tasks_keep_their_own_columns_and_overrides_after_extend():
    first = _rows(_task("a.parquet", "spam", "run-2"), ["a0", "a1"])
    second = _rows(_task("b.parquet", "harassment", "run-2"), ["b0", "b1", "b2"])
    # b1 is a label carried over from an earlier run: its own run and time, reused by this one.
    second.overrides[1] = {"run_id": "run-1", "labelled_at": EARLIER, "reused_by_run_id": "run-2"}
    rows = OutputRows()
    rows.extend(first)
    rows.extend(second)

    assert len(rows) == 5
    table = rows.to_table()
    assert table.schema == OUTPUT_SCHEMA
    got = table.to_pylist()
    assert [r["id"] for r in got] == ["a0", "a1", "b0", "b1", "b2"]
    assert [r["source_file"] for r in got] == ["a.parquet"] * 2 + ["b.parquet"] * 3
    assert [r["policy_id"] for r in got] == ["spam"] * 2 + ["harassment"] * 3
    assert [r["run_id"] for r in got] == ["run-2"] * 3 + ["run-1", "run-2"]
    assert [r["reused_by_run_id"] for r in got] == [None] * 3 + ["run-2", None]
    assert [r["labelled_at"] for r in got] == [WHEN] * 3 + [EARLIER, WHEN]
    assert rows.column("run_id") == [r["run_id"] for r in got]
    assert rows.column("id") == [r["id"] for r in got]
