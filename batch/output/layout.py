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

For a table on an object store (``s3://bucket/labels``) the same names are objects under
its prefix, except the index and the commit lock, which are in the table's local cache folder
(``output.place``).
"""

from __future__ import annotations

from pathlib import Path

from batch.output.place import join

RUNS_DIR = "_runs"
DIFFS_DIR = "_diffs"
CANDIDATES_DIR = "_candidates"


def manifest_path(output: str | Path, run_id: str) -> str:
    return join(output, RUNS_DIR, f"{run_id}.json")


def diff_path(output: str | Path, run_id: str, suffix: str) -> str:
    return join(output, DIFFS_DIR, f"{run_id}{suffix}")


def candidate_path(output: str | Path, run_id: str) -> str:
    return join(output, CANDIDATES_DIR, run_id)
