"""The prefilter: threshold selection, pickle-free storage, routing, audit and refusal."""

import json
import random

import numpy as np
import pytest
from conftest import POLICIES, SHARED, write_parquet
from helpers import answering, rows_of, run

from batch.job.prefilter_train import rows_from_gold
from batch.policy.files import load_policies
from batch.prefilter.model import PrefilterError, load, load_for_policies, save
from batch.prefilter.train import held_out, threshold_for_recall, train_prefilter


def synthetic(n=400, seed=0):
    """Spam-like rows (prize words) and ordinary chat, with a little label noise."""
    rng = random.Random(seed)
    spam = ["WIN a prize now", "claim your free cash", "text WIN to 80086", "free ringtones"]
    chat = ["see you at dinner", "running late sorry", "call me later", "how was the exam"]
    texts, labels = [], []
    for i in range(n):
        is_spam = rng.random() < 0.3
        base = rng.choice(spam if is_spam else chat)
        texts.append(f"{base} {rng.choice(['ok', 'now', 'pls', 'x'])} {i}")
        labels.append(int(is_spam) if rng.random() > 0.02 else int(not is_spam))
    return texts, labels


@pytest.fixture(scope="module")
def spam_prefilter(tmp_path_factory):
    (policy,) = load_policies([POLICIES / "spam.md"])
    texts, labels = synthetic()
    model = train_prefilter(texts, labels, policy, recall=0.95, c_grid=(4.0,))
    folder = tmp_path_factory.mktemp("prefilter")
    save(model, folder)
    return folder


def test_threshold_keeps_the_requested_share_of_positives():
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert threshold_for_recall(scores, 1.0) == 0.1
    assert threshold_for_recall(scores, 0.9) == 0.2  # one of ten may fall below
    assert threshold_for_recall(scores, 0.85) == 0.2
    assert threshold_for_recall(scores, 0.8) == 0.3
    for recall in (0.5, 0.77, 0.95, 0.99):
        t = threshold_for_recall(scores, recall)
        assert (scores >= t).mean() >= recall


def test_held_out_recall_meets_the_target_on_sms():
    """Thresholds chosen without a fold keep the recall target on that fold (SMS, CV)."""
    (policy,) = load_policies([POLICIES / "spam.md"])
    texts, labels = rows_from_gold(str(sms_parquet_path()), "spam")
    for target in (0.95, 0.98):
        model = train_prefilter(texts, labels, policy, recall=target, c_grid=(16.0,))
        card = model.card
        positives = card["training_positives"]
        # Binomial noise on ~750 positives: allow two standard errors below the target.
        slack = 2 * (target * (1 - target) / positives) ** 0.5
        assert card["heldout_recall"] >= target - slack, card
        assert all(r >= target - 3 * slack * 5**0.5 for r in card["heldout_recall_by_fold"])
        assert 0 < card["escalation_fraction"] < 0.5  # it really filters
    y = np.array(labels)
    fold_of = np.arange(len(y)) % 5
    perfect = held_out(y.astype(float), y, fold_of, 0.99)
    assert perfect.recall == 1.0 and perfect.escalation == pytest.approx(y.mean())


_SMS = {}


def sms_parquet_path():
    if "path" not in _SMS:
        import tempfile

        from labelled_data import read_sms

        items = read_sms(SHARED / "data" / "sms-spam-collection" / "SMSSpamCollection")
        folder = tempfile.mkdtemp()
        _SMS["path"] = write_parquet(
            __import__("pathlib").Path(folder) / "sms.parquet",
            {
                "id": [i.id for i in items],
                "text": [i.text for i in items],
                "spam": [i.labels["spam"] for i in items],
            },
        )
    return _SMS["path"]


def test_saved_model_loads_without_pickle_and_scores_the_same(spam_prefilter, tmp_path):
    model = load(spam_prefilter)
    card = json.loads((spam_prefilter / "card.json").read_text())
    for key in ("training_rows", "policy_sha256", "threshold", "heldout_recall"):
        assert key in card
    assert card["escalation_fraction"] == model.card["escalation_fraction"]
    with np.load(spam_prefilter / "prefilter.npz", allow_pickle=False) as arrays:
        assert all(arrays[name].dtype != object for name in arrays.files)
    texts = ["WIN a prize now", "see you at dinner"]
    again = load(spam_prefilter).scores(texts)
    assert np.array_equal(model.scores(texts), again)
    assert again[0] > model.threshold > again[1]

    # A file that would need pickle is refused, even when the card's hash matches it.
    import hashlib
    import shutil

    evil = tmp_path / "evil"
    shutil.copytree(spam_prefilter, evil)
    np.savez(evil / "prefilter.npz", coef=np.array([object()], dtype=object))
    card["weights_sha256"] = hashlib.sha256((evil / "prefilter.npz").read_bytes()).hexdigest()
    (evil / "card.json").write_text(json.dumps(card))
    with pytest.raises(PrefilterError, match="not a prefilter weights file"):
        load(evil)
    (evil / "prefilter.npz").write_bytes(b"tampered")
    with pytest.raises(PrefilterError, match="sha256 differs"):
        load(evil)


def test_routing_sends_only_items_above_the_threshold(tmp_path, spam_prefilter):
    policies = load_policies([POLICIES / "spam.md"])
    texts = ["WIN a prize now ok 1", "see you at dinner ok 2", "running late sorry 3"]
    shard = write_parquet(tmp_path / "in" / "a.parquet", {"id": ["a", "b", "c"], "text": texts})
    prefilter = load(spam_prefilter)
    engine = answering(lambda r: "1")
    result = run([shard], policies, tmp_path / "out", engine, prefilters={"spam": prefilter})
    assert engine.requests_seen == 1
    rows = {r["id"]: r for r in rows_of(tmp_path / "out")}
    assert rows["a"]["decided_by"] == "model" and rows["a"]["label"] == "1"
    for item in ("b", "c"):
        assert rows[item]["decided_by"] == "prefilter" == rows[item]["origin"]
        assert rows[item]["label"] == "0" and rows[item]["status"] == "ok"
        assert rows[item]["prefilter_score"] < prefilter.threshold
        assert "below its threshold" in rows[item]["rationale"]
    assert rows["a"]["prefilter_score"] >= prefilter.threshold
    counts = result.manifest["per_policy"]["spam"]
    assert counts["prefiltered"] == 2 and counts["requests_sent"] == 1
    assert result.manifest["prefilters"]["spam"]["threshold"] == prefilter.threshold

    # Without the prefilter, its zeros are not carried over as the model's verdicts.
    plain = answering(lambda r: "0")
    run([shard], policies, tmp_path / "out", plain)
    assert plain.requests_seen == 2  # b and c; a's model label is reused


def test_audit_sends_prefiltered_items_and_measures_the_miss_rate(tmp_path, spam_prefilter):
    policies = load_policies([POLICIES / "spam.md"])
    texts = [f"see you at dinner {i}" for i in range(40)]
    shard = write_parquet(
        tmp_path / "in" / "a.parquet", {"id": list(map(str, range(40))), "text": texts}
    )
    # The model disagrees with the prefilter on every item ending in 7.
    engine = answering(lambda r: "1" if "7<|end|>" in _decode(r) else "0")
    result = run(
        [shard], policies, tmp_path / "out", engine,
        prefilters={"spam": load(spam_prefilter)}, audit_rate=1.0,
    )  # fmt: skip
    counts = result.manifest["per_policy"]["spam"]
    assert counts["audited"] == 40 == engine.requests_seen and counts["prefiltered"] == 0
    assert counts["audit_violations"] == 4 and counts["prefilter_miss_rate"] == 0.1
    low, high = counts["prefilter_miss_rate_ci95"]
    assert low < 0.1 < high
    rows = rows_of(tmp_path / "out")
    assert all(r["prefilter_audit"] and r["decided_by"] == "model" for r in rows)
    # A partial audit is a reproducible share of the prefiltered items.
    partial = answering()
    result = run(
        [shard], policies, tmp_path / "out2", partial,
        prefilters={"spam": load(spam_prefilter)}, audit_rate=0.25,
    )  # fmt: skip
    audited = result.manifest["per_policy"]["spam"]["audited"]
    assert (
        2 <= audited <= 20 and audited + result.manifest["per_policy"]["spam"]["prefiltered"] == 40
    )


def _decode(request):
    from batch.vocab import load_encoding

    return load_encoding().decode(list(request.prompt_token_ids))


def test_a_prefilter_for_another_policy_version_is_refused(tmp_path, spam_prefilter):
    edited = tmp_path / "spam.md"
    edited.write_text((POLICIES / "spam.md").read_text().replace("Spam Policy", "Spam Policy v2"))
    policies = load_policies([edited])
    with pytest.raises(PrefilterError, match="trained for spam with policy_sha256") as failure:
        load_for_policies([str(spam_prefilter)], policies)
    assert "--prefilter-allow-mismatch" in str(failure.value)
    prefilters, allowed = load_for_policies([str(spam_prefilter)], policies, allow_mismatch=True)
    assert allowed == ["spam"] and "spam" in prefilters
    other = load_policies([POLICIES / "harassment.md"])
    with pytest.raises(PrefilterError, match="does not label"):
        load_for_policies([str(spam_prefilter)], other)


def test_train_command_writes_a_card_and_label_refuses_a_stale_prefilter(tmp_path):
    from click.testing import CliRunner

    from batch.cli import cli

    texts, labels = synthetic(300, seed=1)
    gold = write_parquet(tmp_path / "gold.parquet", {"text": texts, "y": labels})
    out = tmp_path / "pf"
    result = CliRunner().invoke(
        cli,
        [
            "prefilter", "train", "--policy", str(POLICIES / "spam.md"), "--gold", str(gold),
            "--label-column", "y", "--recall", "0.95", "--output", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    assert card["source"] == {"gold": str(gold), "label_column": "y"}
    assert card["training_rows"] == 300 and card["recall_target"] == 0.95
    assert f"escalates {card['escalation_fraction']:.1%}" in result.output

    edited = tmp_path / "spam.md"
    edited.write_text((POLICIES / "spam.md").read_text().replace("# Spam Policy", "# Spam v2"))
    shard = write_parquet(tmp_path / "in.parquet", {"id": ["1"], "text": ["hi"]})
    refused = CliRunner().invoke(
        cli,
        [
            "label", "--input", str(shard), "--policy", str(edited), "--output",
            str(tmp_path / "o"), "--model", str(tmp_path), "--prefilter", str(out),
        ],
    )  # fmt: skip
    assert refused.exit_code == 2 and "retrain it" in refused.output
    missing = CliRunner().invoke(
        cli, ["prefilter", "train", "--policy", str(POLICIES / "spam.md"), "--output", str(out)]
    )
    assert missing.exit_code == 2 and "exactly one of --labels" in missing.output
