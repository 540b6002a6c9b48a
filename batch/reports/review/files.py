"""Review files: Parquet, CSV, and Label Studio's JSON tasks (out) and JSON export (back in).

Label Studio is the open-source labelling tool trust & safety teams already run. A task holds
the item's text and our identifiers in ``data``, and the model's verdict as a pre-annotation
(``predictions``, with the score), for the labelling config ``LABEL_CONFIG`` (a text and one
choice, ``violates`` or ``does not violate``). Its JSON export lists each task's
``annotations``; the last one not cancelled is the decision, with who made it and when.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from batch.errors import UsageError
from batch.output.write import write_text_atomic

READ_COLUMNS = ("id", "policy_id", "policy_version", "decision", "reviewer", "reviewed_at", "text")
FORMATS = {".parquet": "parquet", ".csv": "csv", ".json": "label-studio"}
VIOLATES, DOES_NOT = "violates", "does not violate"
LABEL_CONFIG = f"""<View>
  <Header value="Policy: $policy_id (version $policy_version)"/>
  <Text name="text" value="$text"/>
  <Header value="Model: $label (score $score): $rationale"/>
  <Choices name="decision" toName="text" choice="single" showInline="true">
    <Choice value="{VIOLATES}"/>
    <Choice value="{DOES_NOT}"/>
  </Choices>
</View>
"""


# A spreadsheet evaluates a cell that starts with one of these (CSV injection: a text
# "=HYPERLINK(...)" or an id "@SUM(A1)"); such cells, and those starting with the quote used
# to neutralise them, are written behind a leading "'", which reading the file back removes.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")


def _cell(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def _uncell(value: str | None) -> str | None:
    return value[1:] if value is not None and value.startswith("'") else value


def review_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"{path}: the format comes from the extension: {', '.join(FORMATS)}")
    return FORMATS[suffix]


def _task(row: dict[str, Any], model: str) -> dict[str, Any]:
    data = {k: v for k, v in row.items() if k not in ("decision", "reviewer", "reviewed_at")}
    task: dict[str, Any] = {"data": data}
    if row.get("label") in ("0", "1"):
        choice = VIOLATES if row["label"] == "1" else DOES_NOT
        prediction: dict[str, Any] = {
            "model_version": model,
            "result": [{"from_name": "decision", "to_name": "text", "type": "choices",
                        "value": {"choices": [choice]}}],
        }  # fmt: skip
        if row.get("score") is not None:
            prediction["score"] = row["score"]
        task["predictions"] = [prediction]
    return task


def write_review(rows: pl.DataFrame, path: str | Path, model: str = "safeguard-batch") -> None:
    """Write the rows to review, with blank decision columns, in the path's format."""
    kind = review_format(path)
    blank = [
        pl.lit(None, pl.String).alias(c) for c in ("decision", "reviewer", "reviewed_at", "notes")
    ]
    rows = rows.with_columns(blank)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if kind == "parquet":
        rows.write_parquet(path)
    elif kind == "csv":
        rows.with_columns(pl.col(pl.String).map_elements(_cell, return_dtype=pl.String)).write_csv(
            path
        )
    else:
        tasks = [_task(row, model) for row in rows.to_dicts()]
        write_text_atomic(path, json.dumps(tasks, indent=1, ensure_ascii=False) + "\n")
        write_text_atomic(Path(path).with_suffix(".label_config.xml"), LABEL_CONFIG)


def _listed(value: Any, what: str, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise UsageError(f"{where}: {what} must be a list, not {type(value).__name__}")
    return value


def _choices(result: Any, where: str) -> list[str]:
    """The choices of one annotation result, if it is the 'decision' one."""
    if not isinstance(result, dict):
        raise UsageError(f"{where}: an annotation result must be an object, not {result!r}")
    if result.get("from_name") != "decision":
        return []
    value = result.get("value") or {}
    if not isinstance(value, dict):
        raise UsageError(f"{where}: a result's value must be an object, not {value!r}")
    choices = _listed(value.get("choices"), "a result's choices", where)
    if not all(isinstance(choice, str) for choice in choices):
        raise UsageError(f"{where}: choices must be strings, found {choices}")
    return choices


def _annotation(task: dict[str, Any], where: str) -> dict[str, Any] | None:
    """The last annotation of a task that was not cancelled, as decision columns."""
    annotations = _listed(task.get("annotations"), "annotations", where)
    if not all(isinstance(a, dict) for a in annotations):
        raise UsageError(f"{where}: every annotation must be an object")
    done = [a for a in annotations if not a.get("was_cancelled")]
    if not done:
        return None
    last = done[-1]
    results = _listed(last.get("result"), "an annotation's result", where)
    choices = [choice for result in results for choice in _choices(result, where)]
    if len(choices) != 1:
        raise UsageError(f"{where}: expected one 'decision' choice, found {choices}")
    who = last.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    return {
        "decision": choices[0],
        "reviewer": None if who is None else str(who),
        "reviewed_at": last.get("updated_at") or last.get("created_at"),
    }


def _from_label_studio(path: Path) -> pl.DataFrame:
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: not a Label Studio JSON export ({exc})") from exc
    if not isinstance(tasks, list):
        raise UsageError(f"{path}: a Label Studio JSON export is a list of tasks")
    rows = []
    for number, task in enumerate(tasks, 1):
        where = f"{path}: task {number}"
        data = task.get("data") if isinstance(task, dict) else None
        if not isinstance(data, dict) or "id" not in data or "policy_id" not in data:
            raise UsageError(f"{where}: its data has no 'id' and 'policy_id'")
        decided = _annotation(task, where) or {"decision": None, "reviewer": None,
                                                "reviewed_at": None}  # fmt: skip
        text, version = data.get("text"), data.get("policy_version")
        rows.append({"id": str(data["id"]), "policy_id": str(data["policy_id"]), **decided,
                     "text": text if isinstance(text, str) else None,
                     "policy_version": None if version is None else str(version)})  # fmt: skip
    schema = {c: pl.String for c in READ_COLUMNS}
    return pl.DataFrame(rows, schema=schema)


def read_decisions(path: str | Path) -> pl.DataFrame:
    """``READ_COLUMNS`` (strings; ``reviewer``, ``reviewed_at``, ``text`` null if absent), in
    file order; a missing column or an unreadable file is a :class:`UsageError`."""
    path, kind = Path(path), review_format(path)
    if kind == "label-studio":
        return _from_label_studio(path)
    try:
        frame = (
            pl.read_parquet(path) if kind == "parquet" else pl.read_csv(path, infer_schema=False)
        )
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise UsageError(f"{path}: cannot be read ({exc})") from exc
    missing = [c for c in ("id", "policy_id", "decision") if c not in frame.columns]
    if missing:
        raise UsageError(f"{path}: no column {', '.join(missing)}")
    for column in ("reviewer", "reviewed_at", "text", "policy_version"):
        if column not in frame.columns:
            frame = frame.with_columns(pl.lit(None, pl.String).alias(column))
    frame = frame.select([pl.col(c).cast(pl.String) for c in READ_COLUMNS])
    if kind == "csv":  # what writing neutralised for spreadsheets
        frame = frame.with_columns(pl.all().map_elements(_uncell, return_dtype=pl.String))
    return frame
