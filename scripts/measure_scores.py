"""How useful the score is: the tiny demo model through the real engine, held-out data.

    python scripts/measure_scores.py --model demo/tiny-safeguard [--json scores.json]

Labels the held-out SMS messages under the spam policy and the held-out moderation items under
the harassment policy (the 20% the demo model never trained on), greedy like the demo, then
per policy: ROC AUC and PR AUC of ``score`` against gold, the expected calibration error of
the raw score (nothing fitted on top), and the review queue's yield: the share of the
model's errors (ok rows whose label differs from gold) found in the 10% most uncertain rows
(score nearest 0.5) against a random 10% (the mean over 1,000 seeded draws).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SETS = {  # policy: (converter, gold column, data file)
    "spam": ("sms_to_parquet.py", "spam", DATA / "sms-spam-collection" / "SMSSpamCollection"),
    "harassment": ("moderation_to_parquet.py", "harassment",
                   DATA / "openai-moderation-2022" / "samples-1680.jsonl.gz"),
}  # fmt: skip


def run(*command: str) -> None:
    subprocess.run(command, check=True, cwd=ROOT)


def queue_yield(frame, share: float = 0.10, draws: int = 1000) -> dict:
    """Errors found in the most uncertain ``share`` of rows vs in a random ``share``."""
    import numpy as np

    rows = frame.filter(frame["score"].is_not_null())
    errors = (rows["label"].cast(int) != rows["gold"]).to_numpy()
    size = max(1, round(share * len(rows)))
    uncertain = np.argsort(np.abs(rows["score"].to_numpy() - 0.5), kind="stable")[:size]
    rng = np.random.default_rng(0)
    random = [errors[rng.choice(len(rows), size, replace=False)].sum() for _ in range(draws)]
    total = int(errors.sum())
    found, expected = int(errors[uncertain].sum()), float(np.mean(random))
    return {
        "rows": len(rows),
        "errors": total,
        "queue_rows": size,
        "errors_in_uncertain": found,
        "errors_in_random_mean": expected,
        "share_found_uncertain": found / total if total else None,
        "share_found_random": expected / total if total else None,
        "ratio": found / expected if expected else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=None, help="Keep the data and labels here.")
    args = parser.parse_args(argv)
    os.environ.setdefault("TIKTOKEN_ENCODINGS_BASE", str(ROOT.parent / "shared" / "vocab"))
    import polars as pl

    work = args.work or Path(tempfile.mkdtemp(prefix="scores-"))
    cli = [str(ROOT / ".venv" / "bin" / "safeguard-batch")]
    report: dict = {"model": args.model, "per_policy": {}}
    for policy, (converter, gold_column, source) in SETS.items():
        data, labels = work / f"{policy}-data", work / f"{policy}-labels"
        run(sys.executable, f"scripts/{converter}", str(data), "--split", "heldout",
            "--source", str(source))  # fmt: skip
        run(*cli, "label", "--input", str(data), "--policy", f"policies/{policy}.md",
            "--model", args.model, "--output", str(labels), "--max-model-len", "4096",
            "--max-tokens", "256", "--temperature", "0", "--quiet")  # fmt: skip
        evaluation = work / f"{policy}-eval.json"
        run(*cli, "eval", "--labels", str(labels), "--gold", str(data), "--json", str(evaluation),
            "--bootstrap", "0", "--png", str(work / f"{policy}-eval.png"))  # fmt: skip
        quality = json.loads(evaluation.read_text())["per_policy"][policy]
        gold = pl.read_parquet(data).select("id", pl.col(gold_column).alias("gold"))
        current = pl.read_delta(str(labels)).filter(pl.col("status") == "ok")
        joined = current.join(gold, on="id").filter(pl.col("gold").is_not_null())
        report["per_policy"][policy] = {
            "labelled_ok": len(current),
            "scored": quality["scored"],
            "roc_auc": quality["roc_auc"],
            "pr_auc": quality["pr_auc"],
            "ece_raw_score": quality["ece"],
            "f1": quality["f1"],
            "review_queue": queue_yield(joined),
        }
    print("| policy | ok rows | scored | ROC AUC | PR AUC | ECE (raw) | errors | "
          "found in top 10% uncertain | in random 10% | ratio |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for policy, p in report["per_policy"].items():
        q = p["review_queue"]
        print(f"| {policy} | {p['labelled_ok']} | {p['scored']} | {p['roc_auc']:.3f} | "
              f"{p['pr_auc']:.3f} | {p['ece_raw_score']:.3f} | {q['errors']} | "
              f"{q['errors_in_uncertain']} ({q['share_found_uncertain']:.0%}) | "
              f"{q['errors_in_random_mean']:.1f} ({q['share_found_random']:.0%}) | "
              f"{q['ratio']:.1f}x |")  # fmt: skip
    print(f"\nlabels and evaluations kept in {work}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
