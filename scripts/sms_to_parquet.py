#!/usr/bin/env python3
"""Convert the SMS Spam Collection into Parquet shards for demos, tests and evaluation.

    python scripts/sms_to_parquet.py OUT_DIR [--shards N] [--split all|train|heldout]

Columns: ``id`` (``sms-00000``…, the line number), ``text``, and the gold label ``spam``
(1 = spam, 0 = ham). ``--split heldout`` keeps the seeded 20% the demo model never trained on.
The text is converted at run time from ``../shared/data`` and never stored in the repository
(the collection is free for research; cite Almeida and Gómez Hidalgo).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labelled_data import is_held_out, read_sms  # noqa: E402

DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "sms-spam-collection" / "SMSSpamCollection"


def select(items: list, split: str, seed: int) -> list:
    if split == "all":
        return items
    return [i for i in items if is_held_out(i.id, seed) == (split == "heldout")]


def write_shards(table: pa.Table, out_dir: Path, shards: int) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    per_shard = max(1, -(-table.num_rows // shards))
    paths = []
    for index in range(shards):
        part = table.slice(index * per_shard, per_shard)
        path = out_dir / f"part-{index:05d}.parquet"
        pq.write_table(part, path)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--split", choices=["all", "train", "heldout"], default="all")
    parser.add_argument("--seed", type=int, default=0, help="hold-out seed")
    parser.add_argument("--limit", type=int, default=None, help="keep only the first N messages")
    args = parser.parse_args(argv)
    items = select(read_sms(args.source), args.split, args.seed)[: args.limit]
    table = pa.table(
        {
            "id": [i.id for i in items],
            "text": [i.text for i in items],
            "spam": pa.array([i.labels["spam"] for i in items], pa.int8()),
        }
    )
    paths = write_shards(table, args.out_dir, max(1, args.shards))
    spam = sum(i.labels["spam"] for i in items)
    print(f"wrote {table.num_rows} messages ({spam} spam) in {len(paths)} shards to {args.out_dir}")


if __name__ == "__main__":
    main()
