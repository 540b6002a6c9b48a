"""Atomic files beside the table (run manifests, reports): a reader sees old or new, never
half a file, and a failed write leaves nothing behind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from batch.output.place import write_bytes


def write_json_atomic(path: str | Path, data: dict[str, Any]) -> None:
    """Write JSON through a temporary file and a rename; a failed write leaves nothing."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write text whole: through a temporary file and a rename (locally) or one PUT (on an
    object store); a failed write leaves nothing."""
    write_bytes(path, text.encode())
