"""The output table: one row per (input row, policy). docs/output.md documents every column."""

from __future__ import annotations

import pyarrow as pa

# The ``status`` column: every row has exactly one.
OK = "ok"
PARSE_ERROR = "parse_error"
TRUNCATED = "truncated"
EMPTY_INPUT = "empty_input"
TOO_LONG = "too_long"
ENGINE_ERROR = "engine_error"
STATUSES = (OK, PARSE_ERROR, TRUNCATED, EMPTY_INPUT, TOO_LONG, ENGINE_ERROR)
# Statuses a later run tries again (with a fresh seed), up to ``--max-attempts`` in all.
RETRYABLE = (PARSE_ERROR, TRUNCATED, ENGINE_ERROR)

# The ``origin`` column: where a row's label came from.
ORIGIN_MODEL = "model"  # a request was sent for this row
ORIGIN_DUPLICATE = "duplicate"  # identical content in this run: judged once, fanned out
ORIGIN_REUSED = "reused"  # identical work labelled by an earlier run, carried over
ORIGIN_PLANNER = "planner"  # empty or too long: decided without the model
ORIGIN_PREFILTER = "prefilter"  # scored below the prefilter's threshold: label 0, no request
# The ``decided_by`` column, by origin (every other origin was decided by the model).
DECIDED_BY = {ORIGIN_PLANNER: "planner", ORIGIN_PREFILTER: "prefilter"}

OUTPUT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=True),
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("source_row", pa.int64(), nullable=False),
        pa.field("source_path", pa.string(), nullable=False),
        pa.field("source_fingerprint", pa.string(), nullable=False),
        pa.field("policy_id", pa.string(), nullable=False),
        pa.field("policy_version", pa.string(), nullable=False),
        pa.field("policy_sha256", pa.string(), nullable=False),
        pa.field("prompt_sha256", pa.string(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("model_fingerprint", pa.string(), nullable=False),
        pa.field("settings_sha256", pa.string(), nullable=False),
        pa.field("route", pa.string(), nullable=True),
        pa.field("reasoning_effort", pa.string(), nullable=False),
        pa.field("temperature", pa.float64(), nullable=False),
        pa.field("top_p", pa.float64(), nullable=False),
        pa.field("max_tokens", pa.int32(), nullable=False),
        pa.field("content_sha256", pa.string(), nullable=True),
        pa.field("label", pa.string(), nullable=True),
        pa.field("violation", pa.bool_(), nullable=True),
        pa.field("score", pa.float64(), nullable=True),
        pa.field("policy_category", pa.string(), nullable=True),
        pa.field("rationale", pa.string(), nullable=True),
        pa.field("reasoning", pa.string(), nullable=True),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string(), nullable=True),
        pa.field("finish_reason", pa.string(), nullable=True),
        pa.field("prompt_tokens", pa.int32(), nullable=True),
        pa.field("completion_tokens", pa.int32(), nullable=True),
        pa.field("seed", pa.int64(), nullable=True),
        pa.field("attempt", pa.int16(), nullable=False),
        pa.field("origin", pa.string(), nullable=False),
        pa.field("decided_by", pa.string(), nullable=False),
        pa.field("prefilter_score", pa.float64(), nullable=True),
        pa.field("prefilter_audit", pa.bool_(), nullable=True),
        pa.field("reused_by_run_id", pa.string(), nullable=True),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("labelled_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)
