"""Measure the prefilter on ../shared/data: traffic escalated at a recall target, and speed.

    python scripts/prefilter_measure.py [--data-dir ../shared/data] [--json PATH]

For SMS spam (gold ``spam``) and the 2022 moderation set (target: any of the 8 categories),
at recall 0.95, 0.98 and 0.99, it reports the share of traffic the prefilter would still send
to the model, and the recall it actually kept, both held out: cross-validated, each fold's
threshold chosen without that fold (batch.prefilter.train.held_out). Then the scoring
throughput in items/s, pinned to one CPU core.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(name, "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from labelled_data import MODERATION_CATEGORIES, read_moderation, read_sms  # noqa: E402

from batch.policy.files import load_policy  # noqa: E402
from batch.prefilter.model import load, save  # noqa: E402
from batch.prefilter.train import train_prefilter  # noqa: E402

RECALLS = (0.95, 0.98, 0.99)
REFERENCE = {"sms": 0.20, "moderation": 0.78}  # a first word+char n-gram LR at recall 0.99


def datasets(data_dir: Path) -> dict[str, tuple[list[str], list[int]]]:
    sms = read_sms(data_dir / "sms-spam-collection" / "SMSSpamCollection")
    moderation = read_moderation(data_dir / "openai-moderation-2022" / "samples-1680.jsonl.gz")
    any_category = [
        int(any(item.labels.get(c) == 1 for c in MODERATION_CATEGORIES)) for item in moderation
    ]
    return {
        "sms": ([i.text for i in sms], [i.labels["spam"] for i in sms]),
        "moderation": ([i.text for i in moderation], any_category),
    }


def throughput(folder: Path, texts: list[str], repeats: int = 3) -> float:
    model = load(folder)
    model.scores(texts[:100])  # warm up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for start in range(0, len(texts), 1000):
            model.scores(texts[start : start + 1000])
        best = min(best, time.perf_counter() - started)
    return len(texts) / best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    policy = load_policy(ROOT / "policies" / "spam.md")  # only its hash lands in the card
    results: dict = {"recalls": list(RECALLS), "datasets": {}}
    print(
        "| data | rows | positives | target recall | held-out recall | escalated (held out) "
        "| escalated (OOF, same threshold) | C |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    import tempfile

    for name, (texts, labels) in datasets(args.data_dir).items():
        rows = []
        for recall in RECALLS:
            model = train_prefilter(texts, labels, policy, recall=recall, seed=args.seed)
            card = model.card
            rows.append(
                {
                    "recall_target": recall,
                    "heldout_recall": card["heldout_recall"],
                    "escalation_fraction": card["escalation_fraction"],
                    "oof_escalation_fraction": card["oof_escalation_fraction"],
                    "C": card["model"]["C"],
                }
            )
            print(
                f"| {name} | {len(texts)} | {sum(labels)} | {recall} | "
                f"{card['heldout_recall']:.4f} | {card['escalation_fraction']:.1%} | "
                f"{card['oof_escalation_fraction']:.1%} | {card['model']['C']:g} |",
                flush=True,
            )
        with tempfile.TemporaryDirectory() as folder:
            save(model, folder)
            speed = throughput(Path(folder), texts)
        results["datasets"][name] = {
            "rows": len(texts),
            "positives": sum(labels),
            "at_recall": rows,
            "items_per_second_one_core": speed,
            "reference_escalation_at_0.99": REFERENCE[name],
        }
    print()
    for name, data in results["datasets"].items():
        at99 = data["at_recall"][-1]["escalation_fraction"]
        print(
            f"{name}: escalates {at99:.1%} at recall 0.99 (reference {REFERENCE[name]:.0%}, "
            f"ratio {at99 / REFERENCE[name]:.2f}); scores "
            f"{data['items_per_second_one_core']:,.0f} items/s on one core"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
