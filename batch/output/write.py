"""Atomic files beside the table (run manifests, reports): a reader sees old or new, never
half a file, and a failed write leaves nothing behind."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from batch.output.failures import writing


def write_json_atomic(path: str | Path, data: dict[str, Any]) -> None:
    """Write JSON through a temporary file and a rename; a failed write leaves nothing."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write text through a temporary file and a rename; a failed write leaves nothing."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    with writing(path, "the file"):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(text)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
