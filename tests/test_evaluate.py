from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import write_parquet

from batch.evaluate import evaluate, score, to_markdown


def write_labels(out, rows):
    """rows: (id, policy_id, status, violation, minutes after epoch)."""
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for policy_id in {r[1] for r in rows}:
        mine = [r for r in rows if r[1] == policy_id]
        folder = out / f"policy_id={policy_id}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(
            pa.table(
                {
                    "id": [r[0] for r in mine],
                    "policy_id": [policy_id] * len(mine),
                    "status": [r[2] for r in mine],
                    "violation": pa.array([r[3] for r in mine], pa.bool_()),
                    "labelled_at": [base + timedelta(minutes=r[4]) for r in mine],
                }
            ),
            folder / "part-0.parquet",
        )


def test_scores_match_hand_computed_figures(tmp_path):
    write_labels(
        tmp_path / "labels",
        [
            ("1", "spam", "ok", True, 0),  # tp
            ("2", "spam", "ok", True, 0),  # fp
            ("3", "spam", "ok", False, 0),  # fn
            ("4", "spam", "truncated", None, 0),  # not ok, gold 1 -> counted as 0: fn
            ("5", "spam", "ok", False, 0),  # tn
            ("6", "spam", "ok", True, 0),  # gold missing: excluded
            ("1", "hate", "ok", False, 0),  # tn
            ("2", "hate", "ok", True, 0),  # tp
        ],
    )
    gold = write_parquet(
        tmp_path / "gold.parquet",
        {"id": [1, 2, 3, 4, 5, 6], "spam": [1, 0, 1, 1, 0, None], "h": [0, 1, 0, 0, 0, 0]},
    )
    report = evaluate(tmp_path / "labels", gold, {"hate": "h"})
    spam = report["per_policy"]["spam"]
    assert (spam["tp"], spam["fp"], spam["fn"], spam["tn"]) == (1, 1, 2, 1)
    assert spam["support"] == 5 and spam["not_ok"] == 1 and spam["positives"] == 3
    assert spam["precision"] == pytest.approx(1 / 2)
    assert spam["recall"] == pytest.approx(1 / 3)
    assert spam["f1"] == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))
    assert spam["accuracy"] == pytest.approx(2 / 5)
    hate = report["per_policy"]["hate"]
    assert (hate["tp"], hate["tn"], hate["support"]) == (1, 1, 2)
    # Items 1 and 2 are labelled under both policies: 1 is right on both (tp, tn), 2 is not
    # (spam fp), so multi-policy accuracy is 1/2.
    assert report["multi_policy_items"] == 2
    assert report["multi_policy_accuracy"] == pytest.approx(0.5)
    assert "| spam | 5 | 3 | 0.500 | 0.333 |" in to_markdown(report)


def test_latest_label_wins(tmp_path):
    write_labels(
        tmp_path / "labels",
        [("1", "spam", "ok", False, 0), ("1", "spam", "ok", True, 5)],
    )
    gold = write_parquet(tmp_path / "gold.parquet", {"id": ["1"], "spam": [1]})
    assert evaluate(tmp_path / "labels", gold)["per_policy"]["spam"]["tp"] == 1


def test_undefined_metrics_are_none_not_zero():
    scores = score([0, 0], [0, 0], 0, "p")
    assert scores.precision is None and scores.recall is None and scores.f1 is None
    assert scores.accuracy == 1.0


def test_agrees_with_scikit_learn():
    import random

    from sklearn import metrics

    rng = random.Random(3)
    predicted = [rng.randint(0, 1) for _ in range(200)]
    gold = [rng.randint(0, 1) for _ in range(200)]
    scores = score(predicted, gold, 0, "p")
    assert scores.precision == pytest.approx(metrics.precision_score(gold, predicted))
    assert scores.recall == pytest.approx(metrics.recall_score(gold, predicted))
    assert scores.f1 == pytest.approx(metrics.f1_score(gold, predicted))
    assert scores.accuracy == pytest.approx(metrics.accuracy_score(gold, predicted))


def test_no_gold_column_is_a_clear_error(tmp_path):
    write_labels(tmp_path / "labels", [("1", "spam", "ok", True, 0)])
    gold = write_parquet(tmp_path / "gold.parquet", {"id": ["1"], "other": [1]})
    with pytest.raises(ValueError, match="no gold column"):
        evaluate(tmp_path / "labels", gold)
