"""Where things live in an output folder: the Delta table, and beside it, under names that
start with ``_`` (which Delta readers and ``vacuum`` leave alone), what the tool keeps.

```
OUT/_delta_log/                the table's log: one current label per (source row, policy)
OUT/policy_id=<id>/*.parquet   the table's data files (read them through Delta, not by glob)
OUT/_runs/<run_id>.json        run manifests
OUT/_diffs/<run_id>.md, .json  relabel's flip reports
OUT/_candidates/<run_id>/      relabel --sample: a candidate table beside the real one
OUT/_index/index.sqlite        files seen, files complete, the label store
OUT/_claims/, OUT/_locks/      work claims of live runs, the commit lock
```
"""

from __future__ import annotations

from pathlib import Path

RUNS_DIR = "_runs"
DIFFS_DIR = "_diffs"
CANDIDATES_DIR = "_candidates"


def manifest_path(output: str | Path, run_id: str) -> Path:
    return Path(output) / RUNS_DIR / f"{run_id}.json"


def diff_path(output: str | Path, run_id: str, suffix: str) -> Path:
    return Path(output) / DIFFS_DIR / f"{run_id}{suffix}"


def candidate_path(output: str | Path, run_id: str) -> Path:
    return Path(output) / CANDIDATES_DIR / run_id
