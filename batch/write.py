"""Atomic output: each chunk is written to a temporary file, then renamed into its partition.

Readers never see a half-written file: temporaries live under ``OUT/_tmp/`` (ignored by
``pyarrow.dataset`` and by the ``**/*.parquet`` glob) and ``os.replace`` is atomic on one
filesystem. A chunk's file name is derived from what it contains (source file, fingerprint,
row range, policy hash, model, settings), so rewriting the same work replaces, never duplicates.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

TMP_DIR = "_tmp"
RUNS_DIR = "_runs"


def partition_dir(output: str | Path, policy_id: str) -> Path:
    return Path(output) / f"policy_id={policy_id}"


def write_chunk(output: str | Path, policy_id: str, name: str, table: pa.Table) -> Path:
    """Write ``table`` as ``OUT/policy_id=<id>/<name>.parquet``, atomically."""
    final_dir = partition_dir(output, policy_id)
    tmp_dir = Path(output) / TMP_DIR
    final_dir.mkdir(parents=True, exist_ok=True)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / f"{name}.{uuid.uuid4().hex[:8]}.tmp"
    pq.write_table(table, tmp, compression="zstd")
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    final = final_dir / f"{name}.parquet"
    os.replace(tmp, final)
    return final


def write_json_atomic(path: str | Path, data: dict[str, Any]) -> None:
    """Write JSON through a temporary file and a rename, so a reader sees old or new, not half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)
