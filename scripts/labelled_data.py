"""Readers for the labelled data sets in ``../shared/data``, converted at run time, never copied.

Used by the conversion scripts, the demo model's training, the benchmarks and the tests, so
that ids, hold-outs and gold labels are defined once. Development data only: it is not part of
the installed package.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

MODERATION_CATEGORIES = ("S", "H", "V", "HR", "SH", "S3", "H2", "V2")
HARASSMENT_CATEGORIES = ("H", "HR", "H2")


@dataclass(frozen=True)
class LabelledText:
    id: str
    text: str
    labels: dict[str, int | None]


def read_sms(path: str | Path) -> list[LabelledText]:
    """The SMS Spam Collection: ``label<TAB>text`` per line; gold column ``spam``."""
    items = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle):
            line = line.rstrip("\r\n")
            if not line:
                continue
            label, _, text = line.partition("\t")
            if label not in ("ham", "spam"):
                raise ValueError(f"{path}:{number + 1}: unexpected label {label!r}")
            items.append(LabelledText(f"sms-{number:05d}", text, {"spam": int(label == "spam")}))
    return items


def read_moderation(path: str | Path) -> list[LabelledText]:
    """The 2022 moderation evaluation set; a missing category key means the label is unknown.

    Adds ``harassment``: 1 if any of H, HR, H2 is 1, 0 if all known ones are 0, else unknown.
    """
    items = []
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle):
            record = json.loads(line)
            labels: dict[str, int | None] = {
                c: (int(record[c]) if c in record else None) for c in MODERATION_CATEGORIES
            }
            known = [labels[c] for c in HARASSMENT_CATEGORIES if labels[c] is not None]
            labels["harassment"] = max(known) if known else None
            items.append(LabelledText(f"mod-{number:04d}", record["prompt"], labels))
    return items


def is_held_out(item_id: str, seed: int = 0, fraction: float = 0.2) -> bool:
    """A seeded, order-independent 20% hold-out: hash of (seed, id) below the fraction."""
    digest = hashlib.sha256(f"{seed}:{item_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction
