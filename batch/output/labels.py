"""Reading labels back: every label file of an output as one polars frame, and the usual views.

The output keeps every version of every policy side by side; readers usually want the latest
label per row (``latest_per``) or the labels of each policy's newest version
(``latest_labels``). README ("Reading the output") shows the same queries in plain polars.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from batch.output.layout import label_files
from batch.output.schema import OUTPUT_SCHEMA


def scan_labels(output: str | Path, policy_id: str | None = None) -> pl.LazyFrame:
    """Every label of an output folder (of one policy, if given); empty if it holds none."""
    files = label_files(output, policy_id)
    if not files:
        return pl.from_arrow(OUTPUT_SCHEMA.empty_table()).lazy()
    return pl.scan_parquet(files, missing_columns="insert", extra_columns="ignore")


def latest_per(labels: pl.LazyFrame, keys: Sequence[str]) -> pl.LazyFrame:
    """The most recently labelled row for each value of ``keys``."""
    return labels.sort("labelled_at", maintain_order=True).unique(
        subset=list(keys), keep="last", maintain_order=True
    )


def _versions_by_recency(labels: pl.LazyFrame) -> pl.LazyFrame:
    """(policy_id, policy_sha256) pairs, the most recently labelled last."""
    return (
        labels.group_by("policy_id", "policy_sha256")
        .agg(pl.col("labelled_at").max())
        .sort("labelled_at")
    )


def latest_labels(output: str | Path) -> pl.LazyFrame:
    """Each policy's labels under its most recently labelled version."""
    labels = scan_labels(output)
    newest = _versions_by_recency(labels).group_by("policy_id").agg(pl.col("policy_sha256").last())
    return labels.join(newest, on=["policy_id", "policy_sha256"], how="semi")


def previous_policy_version(output: str | Path, policy_id: str, current_sha: str) -> str | None:
    """The policy hash most recently labelled in ``output`` before ``current_sha``, if any."""
    labels = scan_labels(output, policy_id).filter(pl.col("policy_sha256") != current_sha)
    versions = _versions_by_recency(labels).collect()
    return versions["policy_sha256"][-1] if versions.height else None
