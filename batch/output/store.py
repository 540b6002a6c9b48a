"""The label store: what an output folder already knows, so identical work is never redone.

A label can be carried over to another row when everything that defines it matches: the
content (``content_sha256``), the policy bytes, the rendered prompt, the model fingerprint and
the generation settings (``settings_sha256``, which includes the parser version). Only ``ok``
labels are carried over; failures are retried instead.

The index maps content hashes to the file holding their label and is built lazily, per
policy, the first time a run has work it might not need to do: a rerun with nothing new
never scans the store. It costs about 150 bytes per distinct labelled content per policy.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from batch.output.layout import label_files
from batch.output.schema import DECIDED_BY, OK, ORIGIN_PREFILTER, OUTPUT_SCHEMA

log = logging.getLogger(__name__)

# Columns a carried-over row takes from the row it copies; the rest describe the new row.
LABEL_COLUMNS = (
    "label",
    "violation",
    "policy_category",
    "rationale",
    "reasoning",
    "status",
    "error",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "seed",
    "attempt",
    "decided_by",
    "prefilter_score",
    "prefilter_audit",
    "run_id",
    "labelled_at",
)
_KEY_COLUMNS = ("policy_sha256", "prompt_sha256", "model_fingerprint", "settings_sha256")


@dataclass(frozen=True)
class WorkKey:
    """Everything besides the content that a label depends on."""

    policy_id: str
    policy_sha256: str
    prompt_sha256: str
    model_fingerprint: str
    settings_sha256: str


@dataclass(frozen=True)
class StoredLabel:
    """Where an earlier ``ok`` label for some content lives."""

    path: str
    run_id: str


def _same_work(key: WorkKey) -> pc.Expression:
    return (
        (pc.field("status") == OK)
        & (pc.field("policy_sha256") == key.policy_sha256)
        & (pc.field("prompt_sha256") == key.prompt_sha256)
        & (pc.field("model_fingerprint") == key.model_fingerprint)
        & (pc.field("settings_sha256") == key.settings_sha256)
        & pc.field("content_sha256").is_valid()
        # A prefilter's 0 is not the model's verdict: never carry it over as one.
        & (
            pc.field("decided_by").is_null()
            | (pc.field("decided_by") != DECIDED_BY[ORIGIN_PREFILTER])
        )
    )


class LabelStore:
    """Looks up earlier ``ok`` labels by content hash, per work key."""

    def __init__(self, output: str | Path) -> None:
        self.output = str(output)
        self._index: dict[WorkKey, dict[bytes, StoredLabel]] = {}

    def _build(self, key: WorkKey) -> dict[bytes, StoredLabel]:
        index: dict[bytes, StoredLabel] = {}
        files = label_files(self.output, key.policy_id)
        if files:
            dataset = ds.dataset(files, schema=OUTPUT_SCHEMA, format="parquet")
            table = dataset.to_table(
                columns=["content_sha256", "run_id", "__filename"], filter=_same_work(key)
            )
            paths: dict[str, str] = {}
            for digest, run_id, path in zip(
                table.column("content_sha256").to_pylist(),
                table.column("run_id").to_pylist(),
                table.column("__filename").to_pylist(),
                strict=True,
            ):
                packed = bytes.fromhex(digest)
                if packed not in index:
                    index[packed] = StoredLabel(paths.setdefault(path, path), run_id)
            log.info("label store: %d earlier labels usable for %s", len(index), key.policy_id)
        self._index[key] = index
        return index

    def lookup(self, key: WorkKey, content_sha256: str) -> StoredLabel | None:
        index = self._index.get(key)
        if index is None:
            index = self._build(key)
        return index.get(bytes.fromhex(content_sha256))

    def add(self, key: WorkKey, path: str, rows: Iterable[dict[str, Any]]) -> None:
        """Record the ``ok`` rows a run just wrote, so later chunks of the same run reuse them."""
        index = self._index.get(key)
        if index is None:
            return  # built from disk on first lookup, which will see this file too
        for row in rows:
            if row["status"] == OK and row["content_sha256"] is not None:
                # The newest file wins: an older one may be a partial file it superseded.
                index[bytes.fromhex(row["content_sha256"])] = StoredLabel(path, row["run_id"])

    def fetch(self, key: WorkKey, wanted: dict[str, StoredLabel]) -> dict[str, dict[str, Any]]:
        """The stored label columns for each wanted content hash, reading each file once.

        A hash whose file has vanished is left out: the caller sends that work to the model.
        """
        by_file: dict[str, set[str]] = {}
        for digest, ref in wanted.items():
            by_file.setdefault(ref.path, set()).add(digest)
        found: dict[str, dict[str, Any]] = {}
        for path, digests in by_file.items():
            try:
                table = pq.read_table(
                    path, columns=["content_sha256", *LABEL_COLUMNS, *_KEY_COLUMNS]
                )
            except FileNotFoundError:
                continue  # superseded since the index was built: the work is simply redone
            table = table.filter(
                pc.is_in(table.column("content_sha256"), pa.array(sorted(digests)))
            ).filter(_same_work(key))
            for row in table.to_pylist():
                found.setdefault(row["content_sha256"], {c: row[c] for c in LABEL_COLUMNS})
        return found
