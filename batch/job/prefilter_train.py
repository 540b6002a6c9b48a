"""``prefilter train``: gather texts and 0/1 labels (a gold file, or an output's own model
labels), train a prefilter for one policy and save it."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from batch.errors import UsageError
from batch.flow.plan import content_sha256
from batch.flow.read import parquet_pattern, read_texts
from batch.output.labels import require_table
from batch.output.schema import OK
from batch.output.table import reading
from batch.policy.files import Policy, load_policy
from batch.prefilter.model import Prefilter, save
from batch.prefilter.train import train_prefilter


def rows_from_gold(
    path: str, label_column: str, text_column: str = "text"
) -> tuple[list[str], list[int]]:
    """Texts and 0/1 labels from a gold-labelled Parquet file or folder (nulls left out)."""
    frame = pl.read_parquet(parquet_pattern(path))
    for column in (label_column, text_column):
        if column not in frame.columns:
            raise UsageError(f"{path}: no column {column!r} (it has {', '.join(frame.columns)})")
    frame = frame.filter(pl.col(label_column).is_not_null() & pl.col(text_column).is_not_null())
    return frame[text_column].to_list(), [int(v) for v in frame[label_column].to_list()]


def rows_from_labels(
    output: str, policy: Policy, text_column: str = "text"
) -> tuple[list[str], list[int]]:
    """Texts (read back from each label's source file) and the model's own ok labels.

    Only labels the model produced for exactly this policy version count: prefilter
    decisions are never used to train the next prefilter. A row whose text has changed since
    it was labelled (its content hash differs) is left out.
    """
    mine = (
        (pl.col("policy_id") == policy.id)
        & (pl.col("policy_sha256") == policy.sha256)
        & (pl.col("status") == OK)
        & (pl.col("decided_by").is_null() | (pl.col("decided_by") == "model"))
    )
    with reading(output):
        frame = (
            require_table(output)
            .scan()
            .filter(mine)
            .select("source_path", "source_row", "label", "content_sha256")
            .sort("source_path", "source_row")  # a stable order keeps the folds reproducible
            .collect()
        )
    if frame.is_empty():
        raise UsageError(
            f"{output}: no ok model labels for {policy.id} at this version "
            f"(policy_sha256 {policy.sha256[:12]})"
        )
    texts: list[str] = []
    labels: list[int] = []
    for (path,), group in frame.group_by(["source_path"], maintain_order=True):
        found = read_texts(path, group["source_row"].to_list(), text_column)
        if found is None:
            raise UsageError(f"{path}: cannot read {text_column!r} back to train on its labels")
        for row, label, digest in group.select("source_row", "label", "content_sha256").rows():
            if row in found and content_sha256(found[row]) == digest:
                texts.append(found[row])
                labels.append(int(label))
    return texts, labels


@dataclass(frozen=True)
class TrainingSource:
    """Where the training labels come from: exactly one of an output or a gold file."""

    labels: str | None = None  # an output folder: the model's own ok labels
    gold: str | None = None  # a gold-labelled Parquet file or folder ...
    label_column: str | None = None  # ... and its 0/1 column
    text_column: str = "text"


def train_and_save(
    policy_path: str,
    source: TrainingSource,
    recall: float,
    folds: int,
    seed: int,
    output: str,
) -> tuple[Policy, Prefilter]:
    """Train a prefilter for one policy from ``source`` and write it to ``output``."""
    if (source.labels is None) == (source.gold is None):
        raise UsageError("give exactly one of --labels OUT or --gold PARQUET")
    if source.gold is not None and not source.label_column:
        raise UsageError("--gold needs --label-column")
    policy = load_policy(policy_path)
    if source.labels is not None:
        texts, ys = rows_from_labels(source.labels, policy, source.text_column)
        described = {"labels": source.labels}
    else:
        assert source.gold is not None and source.label_column is not None
        texts, ys = rows_from_gold(source.gold, source.label_column, source.text_column)
        described = {"gold": source.gold, "label_column": source.label_column}
    model = train_prefilter(texts, ys, policy, recall, folds, seed, source=described)
    save(model, output)
    return policy, model
