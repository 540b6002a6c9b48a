"""Atomic output: each file is written to a temporary, then renamed into place.

Readers never see a half-written file: chunk temporaries live under ``OUT/_tmp/`` (ignored by
``pyarrow.dataset`` and by the ``**/*.parquet`` glob) and ``os.replace`` is atomic on one
filesystem. A chunk's file name is derived from what it contains (``layout.chunk_file_name``),
so rewriting the same work replaces, never duplicates.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from batch.output.layout import TMP_DIR


def _host() -> str:
    return socket.gethostname().replace(".", "_")  # dots would confuse the name parser


def _tmp_name(name: str) -> str:
    # Host and pid let a later run tell its own dead temporaries from a live neighbour's.
    return f"{name}.{_host()}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(output: str | Path) -> int:
    """Delete temporaries left by killed runs on this host (never those of a live process)."""
    tmp_dir = Path(output) / TMP_DIR
    if not tmp_dir.is_dir():
        return 0
    host = _host()
    removed = 0
    for path in tmp_dir.glob("*.tmp"):
        parts = path.name.rsplit(".", 4)
        if len(parts) != 5 or parts[1] != host or not parts[2].isdigit():
            continue
        if int(parts[2]) != os.getpid() and not _pid_alive(int(parts[2])):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def write_chunk_file(final: Path, table: pa.Table) -> Path:
    """Write ``table`` to ``final`` (inside ``OUT/policy_id=<id>/``), atomically."""
    tmp_dir = final.parent.parent / TMP_DIR
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / _tmp_name(final.name.removesuffix(".parquet"))
    pq.write_table(table, tmp, compression="zstd")
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, final)
    return final


def write_json_atomic(path: str | Path, data: dict[str, Any]) -> None:
    """Write JSON through a temporary file and a rename, so a reader sees old or new, not half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{_tmp_name(path.name)}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)
