"""The score column: P(violation) read from the verdict token's log-probabilities."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import make_config, read_output, run, well_formed

from batch.engine.base import FLOOR, Completion
from batch.engine.scripted import ScriptedEngine, harmony_completion
from batch.flow.score import score_tokens, verdict_position, verdict_score
from batch.reports.evaluation.score_metrics import (
    calibration,
    operating_point,
    pr_auc,
    precision_recall,
    roc_auc,
)


def scored(completion: Completion, probabilities: dict[str, float], floor: float = 1e-4):
    """The completion with log-probabilities at its verdict digit (``"0"``/``"1"`` only)."""
    position = next(i for i, t in enumerate(completion.token_ids) if t in (15, 16)
                    and i > len(completion.token_ids) - 30)  # fmt: skip
    entry = {({"0": 15, "1": 16}[k]): math.log(v) for k, v in probabilities.items()}
    entry[FLOOR] = math.log(floor)
    return Completion(completion.token_ids, "stop", score_logprobs={position: entry})


def test_binary_score_is_the_share_of_yes_between_the_two_digits():
    completion = scored(
        harmony_completion("1", "Looks like spam: 10 offers."), {"1": 0.6, "0": 0.2}
    )
    assert verdict_score(completion, "binary") == pytest.approx(0.75)
    only_yes = scored(harmony_completion("1"), {"1": 0.9}, floor=0.01)
    assert verdict_score(only_yes, "binary") == pytest.approx(0.9 / 0.91)  # "0" at the floor


def test_json_score_reads_the_violation_value_not_other_digits():
    answer = '{"policy_category": "H2", "rationale": "1 of 0", "violation": 0}'
    completion = harmony_completion(answer, "It is 1 insult, 0 threats.")
    tokens = list(completion.token_ids)
    position = verdict_position(tokens, "json")
    assert position is not None and tokens[position] == 15
    from batch.vocab import load_encoding

    assert load_encoding().decode(tokens[:position]).endswith('"violation": ')
    entry = {15: math.log(0.7), 16: math.log(0.3), FLOOR: math.log(0.01)}
    value = verdict_score(Completion(tokens, "stop", score_logprobs={position: entry}), "json")
    assert value == pytest.approx(0.3)


def test_no_score_without_a_verdict_token_or_logprobs():
    assert verdict_score(harmony_completion(None), "binary") is None  # no final message
    assert verdict_score(harmony_completion("1"), "binary") is None  # no logprobs asked
    assert verdict_score(None, "binary") is None


def test_the_job_fills_score_for_ok_rows_and_leaves_it_null_otherwise(
    tmp_path, small_shards, policies
):
    engine = ScriptedEngine(well_formed, confidence=0.8)
    run([small_shards], policies, tmp_path / "out", engine)
    rows = read_output(tmp_path / "out").to_pylist()
    assert all(call_request.score_tokens == score_tokens() for call in engine.calls
               for call_request in call)  # fmt: skip
    for row in rows:  # every answer is "no violation" with probability 0.8
        assert row["status"] == "ok" and row["score"] == pytest.approx(0.2 / (0.2 + 0.8))

    def broken(request):
        return "not a verdict"

    run([small_shards], policies, tmp_path / "bad", ScriptedEngine(broken))
    assert {r["score"] for r in read_output(tmp_path / "bad").to_pylist()} == {None}


def test_no_scores_asks_for_no_logprobs(tmp_path, small_shards, policies):
    engine = ScriptedEngine(well_formed)
    run([small_shards], policies, tmp_path / "out", engine, scores=False)
    assert all(not r.score_tokens for call in engine.calls for r in call)
    assert {r["score"] for r in read_output(tmp_path / "out").to_pylist()} == {None}


def test_reused_labels_keep_their_score(tmp_path, small_shards, policies):
    run([small_shards], policies[:1], tmp_path / "out", ScriptedEngine(well_formed, confidence=0.7))
    first = {r["id"]: r["score"] for r in read_output(tmp_path / "out").to_pylist()}
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("a.parquet", "b.parquet"):
        (copy / name).write_bytes((small_shards / name).read_bytes())
    again = ScriptedEngine(well_formed, confidence=0.99)
    run([copy], policies[:1], tmp_path / "out", again, source_root=str(tmp_path))
    rows = [r for r in read_output(tmp_path / "out").to_pylist() if r["origin"] == "reused"]
    assert again.requests_seen == 0 and len(rows) == 5
    assert all(r["score"] == pytest.approx(first[r["id"]]) for r in rows)


def test_a_table_made_before_scores_gains_the_column(tmp_path, small_shards, policies):
    from deltalake import DeltaTable

    from batch.output.schema import OUTPUT_SCHEMA

    old = pa.schema([f for f in OUTPUT_SCHEMA if f.name != "score"])
    DeltaTable.create(str(tmp_path / "out"), schema=old, partition_by=["policy_id"])
    run([small_shards], policies[:1], tmp_path / "out", ScriptedEngine(well_formed))
    assert "score" in DeltaTable(str(tmp_path / "out")).schema().to_arrow().names
    assert all(r["score"] is not None for r in read_output(tmp_path / "out").to_pylist())


def test_roc_auc_matches_counting_pairs_with_ties_as_half():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 6, 300) / 5  # many ties
    truth = (rng.random(300) < scores * 0.8).astype(int)
    pos, neg = scores[truth == 1], scores[truth == 0]
    pairs = ((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean()
    assert roc_auc(scores, truth) == pytest.approx(pairs)
    assert roc_auc(scores, np.ones(300, int)) is None


def test_average_precision_and_the_operating_point():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.2, 0.1])
    truth = np.array([1, 0, 1, 1, 0, 0])
    curve = precision_recall(scores, truth)
    # positives at ranks 1, 3, 4: precision 1, 2/3, 3/4 averaged
    assert pr_auc(curve, 3) == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    point = operating_point(curve, target_recall=0.66, target_precision=None)
    assert point["threshold"] == 0.7 and point["recall"] == pytest.approx(2 / 3)
    point = operating_point(curve, None, target_precision=0.75)
    assert point["threshold"] == 0.6 and point["precision"] == pytest.approx(0.75)
    assert operating_point(curve, None, 1.01)["threshold"] is None


def test_expected_calibration_error_weights_each_bin_by_its_items():
    scores = np.array([0.05, 0.05, 0.95, 0.95, 0.55])
    truth = np.array([0, 0, 1, 0, 1])
    ece, bins = calibration(scores, truth)
    # bins: [0,0.1) mean .05 obs 0 (n2); [0.9,1] mean .95 obs .5 (n2); [0.5,0.6) .55 vs 1 (n1)
    assert ece == pytest.approx((2 * 0.05 + 2 * 0.45 + 1 * 0.45) / 5)
    assert [b["count"] for b in bins] == [2, 1, 2]


def test_eval_reports_ranking_and_calibration_with_a_target(tmp_path, policies):
    texts = [f"message {i}" for i in range(40)]
    gold = [int(i % 4 == 0) for i in range(40)]
    folder = tmp_path / "in"
    folder.mkdir()
    pq.write_table(pa.table({"id": [f"m{i}" for i in range(40)], "text": texts, "spam": gold}),
                   folder / "s.parquet")  # fmt: skip

    def confident_on_gold(request):
        return "1" if "message 0" in text_of(request) or "message 4" in text_of(request) else "0"

    def sure(request):  # violating items get a less sure "0" than the others
        number = int(text_of(request).rsplit(" ", 1)[1])
        return 0.6 if number % 4 == 0 else 0.95

    engine = ScriptedEngine(confident_on_gold, confidence=sure)
    run([folder], policies[:1], tmp_path / "out", engine)
    from batch.reports.evaluation.evaluate import evaluate

    report = evaluate(tmp_path / "out", folder, resamples=0, targets=(1.0, None))
    spam = report["per_policy"]["spam"]
    assert spam["scored"] == 40 and spam["roc_auc"] == pytest.approx(1.0)
    assert spam["pr_auc"] == pytest.approx(1.0) and 0 <= spam["ece"] <= 1
    assert spam["operating_point"]["recall"] == 1.0 and spam["operating_point"]["precision"] == 1.0


def text_of(request) -> str:
    from batch.vocab import load_encoding

    text = load_encoding().decode(list(request.prompt_token_ids))
    return text.rsplit("<|start|>user<|message|>", 1)[1].split("<|end|>")[0]


def test_config_default_asks_for_scores(tmp_path, small_shards, policies):
    assert make_config([small_shards], policies, tmp_path / "o").scores is True
