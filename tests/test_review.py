"""The review loop: export rows for review, fill decisions, import them as gold, evaluate."""

from __future__ import annotations

import json

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from helpers import run

from batch.cli import cli
from batch.engine.scripted import ScriptedEngine


def text_of(request) -> str:
    from batch.vocab import load_encoding

    text = load_encoding().decode(list(request.prompt_token_ids))
    return text.rsplit("<|start|>user<|message|>", 1)[1].split("<|end|>")[0]


@pytest.fixture
def labelled(tmp_path, policies):
    """20 messages under the spam policy; the model says 1 for even numbers, less surely for
    multiples of 4; 19 breaks the format."""
    folder = tmp_path / "in"
    folder.mkdir()
    ids = [f"m{i:02d}" for i in range(20)]
    pq.write_table(pa.table({"id": ids, "text": [f"text number {i}" for i in range(20)]}),
                   folder / "s.parquet")  # fmt: skip

    def answer(request):
        number = int(text_of(request).rsplit(" ", 1)[1])
        return "garbage" if number == 19 else ("1" if number % 2 == 0 else "0")

    def sure(request):
        number = int(text_of(request).rsplit(" ", 1)[1])
        return 0.55 if number % 4 == 0 else 0.99

    run([folder], policies[:1], tmp_path / "out", ScriptedEngine(answer, confidence=sure),
        max_attempts=1)  # fmt: skip
    return tmp_path / "out"


def invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result


def test_export_selects_uncertain_failed_and_sampled_rows_once_each(labelled, tmp_path):
    out = tmp_path / "review.parquet"
    result = invoke("review", "export", "--labels", labelled, "--select", "uncertain:5", "--select",
                    "failed", "--select", "sample:3", "--output", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = pl.read_parquet(out)
    assert rows.select("policy_id", "source_row").is_unique().all()
    uncertain = rows.filter(pl.col("reason").str.contains("uncertain"))
    assert sorted(uncertain["id"]) == ["m00", "m04", "m08", "m12", "m16"]  # score 0.55
    assert rows.filter(pl.col("reason").str.contains("failed"))["id"].to_list() == ["m19"]
    assert len(rows.filter(pl.col("reason").str.contains("sample"))) == 3
    assert rows["text"][0].startswith("text number ")
    assert {"decision", "reviewer", "reviewed_at", "score", "policy_sha256"} <= set(rows.columns)
    assert rows["decision"].null_count() == len(rows)


def test_disputed_compares_with_an_earlier_version(labelled, tmp_path, policies):
    from deltalake import DeltaTable

    before = DeltaTable(str(labelled)).version()
    folder = tmp_path / "in"
    flipped = ScriptedEngine(lambda r: "1", confidence=0.9)
    run([folder], policies[:1], labelled, flipped, force=True)
    out = tmp_path / "disputed.csv"
    result = invoke("review", "export", "--labels", labelled, "--select", "disputed",
                    "--against-version", before, "--output", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    odd = [f"m{i:02d}" for i in range(1, 19, 2)]
    assert sorted(pl.read_csv(out)["id"]) == odd  # were 0, now 1
    assert invoke("review", "export", "--labels", labelled, "--select", "disputed", "--output",
                  out).exit_code == 2  # fmt: skip


def _fill_csv(path, decisions):
    frame = pl.read_csv(path, infer_schema=False)
    filled = frame.with_columns(
        pl.col("id").replace_strict(decisions, default=None).alias("decision"),
        pl.lit("alice").alias("reviewer"),
    )
    filled.write_csv(path)


def test_csv_round_trip_gives_the_expected_confusion_matrix(labelled, tmp_path):
    review = tmp_path / "review.csv"
    assert invoke("review", "export", "--labels", labelled, "--select", "sample:8", "--seed", "3",
                  "--output", review).exit_code == 0  # fmt: skip
    ids = pl.read_csv(review)["id"].to_list()
    # the reviewer says 1 for multiples of 3 and leaves the last row blank
    decisions = {i: str(int(int(i[1:]) % 3 == 0)) for i in ids[:-1]}
    _fill_csv(review, decisions)
    gold = tmp_path / "gold.parquet"
    result = invoke("review", "import", review, "--labels", labelled, "--output", gold)
    assert result.exit_code == 0, result.output
    table = pl.read_parquet(gold)
    assert len(table) == 7 and set(table.columns) == {"id", "spam", "spam__reviewer"}
    report = tmp_path / "eval.json"
    assert invoke("eval", "--labels", labelled, "--gold", gold, "--json", report,
                  "--bootstrap", "0").exit_code == 0  # fmt: skip
    spam = json.loads(report.read_text())["per_policy"]["spam"]
    expect = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    for item, decided in decisions.items():
        number = int(item[1:])
        predicted = int(number % 2 == 0 and number != 19)
        key = ("t" if predicted == int(decided) else "f") + ("p" if predicted else "n")
        expect[key] += 1
    assert {k: spam[k] for k in expect} == expect


def test_label_studio_round_trip(labelled, tmp_path):
    tasks_path = tmp_path / "tasks.json"
    assert invoke("review", "export", "--labels", labelled, "--select", "uncertain:3", "--output",
                  tasks_path).exit_code == 0  # fmt: skip
    tasks = json.loads(tasks_path.read_text())
    assert (tmp_path / "tasks.label_config.xml").read_text().startswith("<View>")
    first = tasks[0]
    assert first["data"]["text"].startswith("text number ")
    prediction = first["predictions"][0]
    assert prediction["result"][0]["value"]["choices"] == ["violates"]
    assert prediction["score"] == pytest.approx(0.55)
    # what Label Studio exports once reviewed: annotations beside the data
    for number, task in enumerate(tasks):
        task["annotations"] = [{
            "completed_by": {"email": "bob@example.org"},
            "updated_at": "2026-11-30T10:00:00Z",
            "was_cancelled": False,
            "result": [{"from_name": "decision", "to_name": "text", "type": "choices",
                        "value": {"choices": ["does not violate" if number else "violates"]}}],
        }]  # fmt: skip
    exported = tmp_path / "export.json"
    exported.write_text(json.dumps(tasks))
    gold = tmp_path / "gold.parquet"
    result = invoke("review", "import", exported, "--labels", labelled, "--output", gold,
                    "--tests", tmp_path / "cases")  # fmt: skip
    assert result.exit_code == 0, result.output
    table = pl.read_parquet(gold).sort("id")
    assert table["spam"].to_list() == [1, 0, 0]
    assert set(table["spam__reviewer"]) == {"bob@example.org"}
    cases = (tmp_path / "cases" / "spam.tests.toml").read_text()
    import tomllib

    parsed = tomllib.loads(cases)["tests"]
    assert [c["expected"] for c in parsed] == [1, 0, 0]
    assert all(c["text"].startswith("text number ") for c in parsed)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            {"id": "nope", "policy_id": "spam", "decision": "1"},
            "row 2: id 'nope' has no label under policy 'spam'",
        ),
        ({"id": "m01", "policy_id": "spam", "decision": "maybe"}, "row 2: decision 'maybe'"),
        ({"id": "m01", "policy_id": "other", "decision": "1"}, "row 2: policy 'other'"),
        ({"id": "m00", "policy_id": "spam", "decision": "0"}, "row 2: contradicts row 1"),
    ],
)
def test_bad_decisions_are_errors_naming_the_row(labelled, tmp_path, row, message):
    review = tmp_path / "review.csv"
    pl.DataFrame([{"id": "m00", "policy_id": "spam", "decision": "1"}, row]).write_csv(review)
    result = invoke("review", "import", review, "--labels", labelled, "--output",
                    tmp_path / "gold.parquet")  # fmt: skip
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "gold.parquet").exists()
