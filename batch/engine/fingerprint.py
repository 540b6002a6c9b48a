"""Model fingerprints: which weights produced a label, independent of where they are stored."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

from batch.errors import UsageError

# Files that define the architecture and the weight layout.
_CONFIG_FILES = ("config.json", "generation_config.json")
_INDEX_SUFFIX = ".index.json"
_SAMPLE_BYTES = 1 << 20
_SAMPLES_PER_FILE = 8


class ModelError(UsageError):
    """A model path that is not a usable local model directory."""


def _safetensors_digest(path: Path) -> bytes:
    """Hash a weight file's header (names, dtypes, shapes) and evenly spaced blocks of its data.

    Two checkpoints of one architecture share a header, so sampled data blocks tell a trained
    model from a random one without reading 60 GB of weights on every run.
    """
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        header_len_raw = handle.read(8)
        if len(header_len_raw) == 8:
            (header_len,) = struct.unpack("<Q", header_len_raw)
            digest.update(handle.read(min(header_len, size)))
        step = max(size // _SAMPLES_PER_FILE, 1)
        for offset in range(0, size, step):
            handle.seek(offset)
            digest.update(handle.read(_SAMPLE_BYTES))
    return digest.digest()


def model_fingerprint(model_dir: str | Path) -> str:
    """sha256 over the model's config, weight index and sampled weight content (not its path)."""
    root = Path(model_dir)
    if not root.is_dir():
        raise ModelError(
            f"{model_dir}: not a local model directory (this job loads weights only from "
            "local paths; download them beforehand)"
        )
    if not (root / "config.json").is_file():
        raise ModelError(f"{model_dir}: has no config.json, so it is not a model directory")
    digest = hashlib.sha256()
    for name in _CONFIG_FILES:
        path = root / name
        if path.is_file():
            digest.update(name.encode())
            digest.update(json.dumps(json.loads(path.read_text()), sort_keys=True).encode())
    for path in sorted(root.glob(f"*{_INDEX_SUFFIX}")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    weights = sorted(root.glob("*.safetensors"))
    if not weights:
        raise ModelError(f"{model_dir}: holds no *.safetensors weight files")
    for path in weights:
        digest.update(path.name.encode())
        digest.update(_safetensors_digest(path))
    return digest.hexdigest()
