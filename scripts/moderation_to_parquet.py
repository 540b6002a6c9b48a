#!/usr/bin/env python3
"""Convert OpenAI's 2022 moderation evaluation set into Parquet for evaluation.

    python scripts/moderation_to_parquet.py OUT_DIR [--split all|train|heldout]

Columns: ``id`` (``mod-0000``…), ``text``, the eight category columns S, H, V, HR, SH, S3,
H2, V2 (null where the label is unknown) and ``harassment`` (1 if any of H, HR, H2 is 1).
Converted at run time from ``../shared/data`` (MIT licence, see the LICENSE beside the data).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labelled_data import MODERATION_CATEGORIES, is_held_out, read_moderation  # noqa: E402

DEFAULT_SOURCE = (
    ROOT.parent / "shared" / "data" / "openai-moderation-2022" / "samples-1680.jsonl.gz"
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--split", choices=["all", "train", "heldout"], default="all")
    parser.add_argument("--seed", type=int, default=0, help="hold-out seed")
    args = parser.parse_args(argv)
    items = read_moderation(args.source)
    if args.split != "all":
        items = [i for i in items if is_held_out(i.id, args.seed) == (args.split == "heldout")]
    columns = {"id": [i.id for i in items], "text": [i.text for i in items]}
    for category in (*MODERATION_CATEGORIES, "harassment"):
        columns[category] = pa.array([i.labels[category] for i in items], pa.int8())
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / "moderation-2022.parquet"
    pq.write_table(pa.table(columns), path)
    print(f"wrote {len(items)} items to {path}")


if __name__ == "__main__":
    main()
