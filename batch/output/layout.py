"""Where things live in an output folder, and how a chunk file is named after its work.

```
OUT/policy_id=<id>/part-<fingerprint>-<chunk>-<work hash>.parquet   labels of one chunk
OUT/policy_id=<id>/part-...partial.parquet   rows of a chunk that a --sample run labelled in part
OUT/_runs/<run_id>.json                      run manifests
OUT/_diffs/<run_id>.md, .json                relabel's flip reports
OUT/_tmp/                                    in-flight temporaries, never visible as data
```
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

TMP_DIR = "_tmp"
RUNS_DIR = "_runs"
DIFFS_DIR = "_diffs"


def partition_dir(output: str | Path, policy_id: str) -> Path:
    return Path(output) / f"policy_id={policy_id}"


def chunk_path(output: str | Path, policy_id: str, name: str) -> Path:
    return partition_dir(output, policy_id) / f"{name}.parquet"


def partial_chunk_path(output: str | Path, policy_id: str, name: str) -> Path:
    """Where a sample run keeps the rows it labelled of a chunk it did not label whole."""
    return partition_dir(output, policy_id) / f"{name}.partial.parquet"


def manifest_path(output: str | Path, run_id: str) -> Path:
    return Path(output) / RUNS_DIR / f"{run_id}.json"


def diff_path(output: str | Path, run_id: str, suffix: str) -> Path:
    return Path(output) / DIFFS_DIR / f"{run_id}{suffix}"


def chunk_file_name(fingerprint: str, index: int, work: Sequence[str]) -> str:
    """A file name that identifies the work, not the worker that did it.

    ``work`` lists everything the chunk's labels depend on (source path and fingerprint,
    chunk index and size, policy, prompt, model and settings hashes, any prefilter route).
    """
    digest = hashlib.sha256("|".join(work).encode()).hexdigest()[:20]
    return f"part-{fingerprint[:12]}-{index:06d}-{digest}"


def label_files(output: str | Path, policy_id: str | None = None) -> list[str]:
    """Every finished chunk file of an output folder (temporaries are never included)."""
    root = Path(output)
    pattern = f"policy_id={policy_id}/*.parquet" if policy_id else "policy_id=*/*.parquet"
    return sorted(str(p) for p in root.glob(pattern))
