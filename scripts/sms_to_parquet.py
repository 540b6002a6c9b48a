#!/usr/bin/env python3
"""Convert the SMS Spam Collection into Parquet shards for demos, tests and evaluation.

    python scripts/sms_to_parquet.py OUT_DIR [--shards N] [--source PATH]

Columns: ``id`` (``sms-00000``…, the line number), ``text``, and the gold label ``spam``
(1 = spam, 0 = ham). The text is converted at run time from ``../shared/data`` and never
stored in the repository (the collection is free for research; cite Almeida and Gómez Hidalgo).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

DEFAULT_SOURCE = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "data"
    / "sms-spam-collection"
    / "SMSSpamCollection"
)


def read_sms(source: Path) -> pa.Table:
    ids, texts, labels = [], [], []
    with open(source, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle):
            line = line.rstrip("\r\n")
            if not line:
                continue
            label, _, text = line.partition("\t")
            if label not in ("ham", "spam"):
                raise ValueError(f"{source}:{number + 1}: unexpected label {label!r}")
            ids.append(f"sms-{number:05d}")
            texts.append(text)
            labels.append(1 if label == "spam" else 0)
    return pa.table(
        {"id": ids, "text": texts, "spam": pa.array(labels, pa.int8())},
    )


def write_shards(table: pa.Table, out_dir: Path, shards: int) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    per_shard = -(-table.num_rows // shards)
    paths = []
    for index in range(shards):
        part = table.slice(index * per_shard, per_shard)
        path = out_dir / f"part-{index:05d}.parquet"
        pq.write_table(part, path)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--limit", type=int, default=None, help="keep only the first N messages")
    args = parser.parse_args()
    table = read_sms(args.source)
    if args.limit is not None:
        table = table.slice(0, args.limit)
    paths = write_shards(table, args.out_dir, max(1, args.shards))
    spam = sum(table["spam"].to_pylist())
    print(f"wrote {table.num_rows} messages ({spam} spam) in {len(paths)} shards to {args.out_dir}")


if __name__ == "__main__":
    main()
