from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest
from conftest import write_parquet

from batch.reports.evaluation.evaluate import evaluate
from batch.reports.evaluation.metrics import score
from batch.reports.evaluation.render import to_markdown


def write_labels(out, rows):
    """rows: (id, policy_id, status, violation, minutes after epoch), as a Delta table."""
    from deltalake import write_deltalake

    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    table = pa.table(
        {
            "id": [r[0] for r in rows],
            "policy_id": [r[1] for r in rows],
            "status": [r[2] for r in rows],
            "violation": pa.array([r[3] for r in rows], pa.bool_()),
            "labelled_at": [base + timedelta(minutes=r[4]) for r in rows],
        }
    )
    write_deltalake(str(out), table, partition_by=["policy_id"], mode="append")


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
    shown = to_markdown(report)
    assert "| spam | 5 | 3 | 0.500 [" in shown and "| 1 | 1 | 2 | 1 |" in shown


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


def random_case(rng, n, gold_ones=None, pred_ones=None, missing=0.0):
    gold = [
        None
        if rng.random() < missing
        else (gold_ones if gold_ones is not None else rng.randint(0, 1))
        for _ in range(n)
    ]
    pred = [pred_ones if pred_ones is not None else rng.randint(0, 1) for _ in range(n)]
    return gold, pred


@pytest.mark.parametrize(
    "case",
    [
        dict(n=150),
        dict(n=80, missing=0.3),  # missing gold: excluded for that policy only
        dict(n=40, gold_ones=0),  # no gold positives: recall and F1 undefined
        dict(n=40, gold_ones=1),  # all one class
        dict(n=40, pred_ones=0),  # nothing predicted positive: precision undefined
        dict(n=40, gold_ones=1, pred_ones=1),
    ],
)
def test_evaluate_agrees_with_scikit_learn_end_to_end(tmp_path, case):
    import random

    from sklearn import metrics

    rng = random.Random(7)
    gold, pred = random_case(rng, **case)
    write_labels(
        tmp_path / "labels",
        [(str(i), "spam", "ok", bool(p), 0) for i, p in enumerate(pred)],
    )
    gold_file = write_parquet(
        tmp_path / "gold.parquet",
        {"id": [str(i) for i in range(len(gold))], "spam": pa.array(gold, pa.int8())},
    )
    report = evaluate(tmp_path / "labels", gold_file, resamples=50)
    s = report["per_policy"]["spam"]
    kept = [(g, p) for g, p in zip(gold, pred, strict=True) if g is not None]
    y, yhat = [g for g, _ in kept], [p for _, p in kept]
    assert s["support"] == len(kept)
    tn, fp, fn, tp = metrics.confusion_matrix(y, yhat, labels=[0, 1]).ravel()
    assert (s["tp"], s["fp"], s["fn"], s["tn"]) == (tp, fp, fn, tn)
    assert s["accuracy"] == pytest.approx(metrics.accuracy_score(y, yhat))
    for name, fn_ in (
        ("precision", metrics.precision_score),
        ("recall", metrics.recall_score),
        ("f1", metrics.f1_score),
    ):
        expected = fn_(y, yhat, zero_division=float("nan"))
        if expected != expected:  # undefined: we say None, never a silent 0
            assert s[name] is None
        else:
            assert s[name] == pytest.approx(expected)


def test_bootstrap_intervals_match_a_naive_resampling_with_scikit_learn():
    import numpy as np
    from sklearn import metrics

    from batch.reports.evaluation.metrics import _RESAMPLES_PER_BLOCK, bootstrap

    rng = np.random.default_rng(1)
    pred = {"a": rng.integers(0, 2, 60), "b": rng.integers(0, 2, 60)}
    gold = {"a": rng.integers(0, 2, 60), "b": rng.integers(-1, 2, 60)}
    got = bootstrap(pred, gold, resamples=2 * _RESAMPLES_PER_BLOCK, seed=5)

    draws = np.random.default_rng(5)
    f1_a, multi = [], []
    for _ in range(2):
        counts = draws.multinomial(60, np.full(60, 1 / 60), size=_RESAMPLES_PER_BLOCK)
        for row in counts:
            index = np.repeat(np.arange(60), row)
            f1_a.append(metrics.f1_score(gold["a"][index], pred["a"][index]))
            both = index[gold["b"][index] >= 0]
            right = (pred["a"][both] == gold["a"][both]) & (pred["b"][both] == gold["b"][both])
            multi.append(right.mean())
    assert got["per_policy"]["a"]["f1"] == pytest.approx(list(np.percentile(f1_a, [2.5, 97.5])))
    assert got["multi_policy_accuracy"] == pytest.approx(list(np.percentile(multi, [2.5, 97.5])))


def test_intervals_are_seeded_and_bracket_the_estimate(tmp_path):
    import random

    rng = random.Random(2)
    gold, pred = random_case(rng, 300)
    write_labels(
        tmp_path / "labels", [(str(i), "spam", "ok", bool(p), 0) for i, p in enumerate(pred)]
    )
    gold_file = write_parquet(
        tmp_path / "g.parquet", {"id": [str(i) for i in range(300)], "spam": gold}
    )
    one = evaluate(tmp_path / "labels", gold_file, seed=3)
    two = evaluate(tmp_path / "labels", gold_file, seed=3)
    other = evaluate(tmp_path / "labels", gold_file, seed=4)
    spam = one["per_policy"]["spam"]
    assert spam["ci95"] == two["per_policy"]["spam"]["ci95"] != other["per_policy"]["spam"]["ci95"]
    for metric in ("precision", "recall", "f1", "accuracy"):
        low, high = spam["ci95"][metric]
        assert low < spam[metric] < high and high - low < 0.2
    assert one["ci95"]["resamples"] == 1000


def test_png_holds_the_confusion_matrices(tmp_path):
    from batch.reports.evaluation.render import to_png

    write_labels(tmp_path / "labels", [("1", "spam", "ok", True, 0), ("2", "hate", "ok", False, 0)])
    gold = write_parquet(tmp_path / "g.parquet", {"id": ["1", "2"], "spam": [1, 0], "hate": [0, 1]})
    report = evaluate(tmp_path / "labels", gold, resamples=20)
    to_png(report, tmp_path / "eval.png")
    assert (tmp_path / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gold_column_matches_policy_id_case_insensitively(tmp_path):
    write_labels(tmp_path / "labels", [("1", "s3", "ok", True, 0)])
    gold = write_parquet(tmp_path / "g.parquet", {"id": ["1"], "S3": [1]})
    report = evaluate(tmp_path / "labels", gold, resamples=0)
    assert report["gold_columns"] == {"s3": "S3"} and report["per_policy"]["s3"]["tp"] == 1
