"""Every way a careful user broke a run (issue 15) gets a clear answer, and none a wrong one.

One test (or a few) per reported point, in the issue's order.
"""

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from conftest import POLICIES, ROOT, write_parquet
from helpers import answering, rows_of, run

from batch.cli import cli
from batch.errors import EXIT_OUTPUT, EXIT_USAGE, OutputError, UsageError
from batch.flow.sources import check_output_outside
from batch.policy.files import PolicyError, load_policies, parse_policy
from batch.prefilter.features import FeatureSpec, PrefilterError
from batch.prefilter.model import Prefilter, load, save
from batch.vocab import MAX_PIECE, encoding_pieces, load_encoding

SPEC = FeatureSpec(n_features=1 << 8)


@pytest.fixture
def prefilter_dir(tmp_path):
    """A small valid prefilter for the spam policy (it scores everything at about 0.1)."""
    (policy,) = load_policies([POLICIES / "spam.md"])
    card = {"policy_id": "spam", "policy_sha256": policy.sha256, "threshold": 0.5,
            "features": SPEC.as_dict()}  # fmt: skip
    idf = [np.ones(SPEC.n_features), np.ones(SPEC.n_features)]
    save(Prefilter(card, np.zeros(2 * SPEC.n_features), -2.2, idf), tmp_path / "pf")
    return tmp_path / "pf"


def rewrite(folder, card_changes=None, **arrays):
    """Change a saved prefilter's arrays and card, keeping the card's hash of the weights."""
    with np.load(folder / "prefilter.npz") as npz:
        current = {name: npz[name] for name in npz.files}
    current.update(arrays)
    np.savez_compressed(folder / "prefilter.npz", **current)
    card = json.loads((folder / "card.json").read_text())
    card["weights_sha256"] = hashlib.sha256((folder / "prefilter.npz").read_bytes()).hexdigest()
    card.update(card_changes or {})
    (folder / "card.json").write_text(json.dumps(card))


# 1. A prefilter with NaN weights labelled almost everything 0.


def test_a_prefilter_with_non_finite_weights_or_threshold_is_refused(prefilter_dir):
    assert load(prefilter_dir).threshold == 0.5
    rewrite(prefilter_dir, coef=np.full(2 * SPEC.n_features, np.nan, dtype=np.float32))
    with pytest.raises(PrefilterError, match="coef holds values that are not finite"):
        load(prefilter_dir)
    rewrite(prefilter_dir, coef=np.zeros(2 * SPEC.n_features, dtype=np.float32))
    for threshold in (1.5, -0.1, float("nan")):
        card = json.loads((prefilter_dir / "card.json").read_text())
        card["threshold"] = threshold
        (prefilter_dir / "card.json").write_text(json.dumps(card))
        with pytest.raises(PrefilterError, match="'threshold' must be a number from 0 to 1"):
            load(prefilter_dir)


def test_a_score_that_is_not_finite_never_decides_a_row(tmp_path, prefilter_dir, monkeypatch):
    prefilter = load(prefilter_dir)
    monkeypatch.setattr(Prefilter, "scores", lambda self, texts: np.full(len(texts), np.nan))
    shard = write_parquet(tmp_path / "in" / "a.parquet", {"id": ["1", "2"], "text": ["a", "b"]})
    engine = answering()
    policies = load_policies([POLICIES / "spam.md"])
    run([shard], policies, tmp_path / "out", engine, prefilters={"spam": prefilter})
    assert engine.requests_seen == 2
    assert {r["decided_by"] for r in rows_of(tmp_path / "out")} == {"model"}


# 2. The prefilter card was trusted blindly.


@pytest.mark.parametrize(
    "weights", ["../elsewhere/prefilter.npz", "/dev/zero", "..", "sub/prefilter.npz"]
)
def test_weights_must_be_a_plain_file_beside_the_card(prefilter_dir, weights):
    card = json.loads((prefilter_dir / "card.json").read_text())
    card["weights"] = weights
    (prefilter_dir / "card.json").write_text(json.dumps(card))
    with pytest.raises(PrefilterError, match="'weights' must name a file beside the card"):
        load(prefilter_dir)


def test_every_shape_and_field_is_checked_at_load(prefilter_dir):
    rewrite(prefilter_dir, coef=np.zeros(7, dtype=np.float32))
    with pytest.raises(PrefilterError, match=r"coef has shape \(7,\)"):
        load(prefilter_dir)
    rewrite(prefilter_dir, coef=np.zeros(2 * SPEC.n_features, dtype=np.float32))
    card = json.loads((prefilter_dir / "card.json").read_text())
    del card["features"]["n_features"]
    (prefilter_dir / "card.json").write_text(json.dumps(card))
    with pytest.raises(PrefilterError, match="features.n_features must be an integer"):
        load(prefilter_dir)


# 3. The same binary id was written two ways.


def test_an_id_is_written_the_same_way_whatever_else_is_in_its_file(tmp_path, policies):
    write_parquet(tmp_path / "in" / "a.parquet",
                  {"id": pa.array([b"ok"], pa.binary()), "text": ["x"]})  # fmt: skip
    write_parquet(tmp_path / "in" / "b.parquet",
                  {"id": pa.array([b"ok", b"\xff"], pa.binary()), "text": ["y", "z"]})  # fmt: skip
    invalid = pa.Array.from_buffers(
        pa.string(), 1, [None, pa.py_buffer(np.array([0, 1], np.int32)), pa.py_buffer(b"\xfe")]
    )
    pq.write_table(pa.table({"id": invalid, "text": ["w"]}), tmp_path / "in" / "c.parquet")
    run([tmp_path / "in"], policies[:1], tmp_path / "out", answering())
    ids = {(r["source_file"], r["id"]) for r in rows_of(tmp_path / "out")}
    assert ids == {("a.parquet", "ok"), ("b.parquet", "ok"), ("b.parquet", "hex:ff"),
                   ("c.parquet", "hex:fe")}  # fmt: skip


# 4. Quadratic tokenizing of long unbroken text.


@pytest.mark.parametrize(
    "text, status",
    [
        ("ab" * 750_000, "too_long"),
        ("a" + " " * 1_500_000, "ok"),
        ("!" + "\n/" * 750_000, "too_long"),
    ],
    ids=["word", "spaces", "newline-slash"],  # spaces: 1.5M of them are ~13k tokens, they fit
)
def test_a_huge_unbroken_text_is_planned_in_seconds_at_a_long_context(
    tmp_path, policies, text, status
):
    shard = write_parquet(tmp_path / "in" / "a.parquet", {"id": ["w"], "text": [text]})
    started = time.perf_counter()
    engine = answering()
    run([shard], policies[:1], tmp_path / "out", engine, max_model_len=131072)
    elapsed = time.perf_counter() - started
    (row,) = rows_of(tmp_path / "out")
    assert row["status"] == status and engine.requests_seen == (status == "ok")
    assert (row["prompt_tokens"] > 131072) == (status == "too_long")
    assert elapsed < 60, elapsed  # whole minutes per row before (about 20 at this length)


def test_text_in_pieces_encodes_exactly_as_the_whole_text():
    """The proof behind the pieces, tried: wherever the cuts fall at word boundaries (all
    prose), the tokens are the whole text's, on random texts built to stress the
    pre-tokenizer (contractions, CR LF, marks, non-breaking spaces, digits, emoji)."""
    encoding = load_encoding()
    rng = random.Random(15)
    alphabet = list("abcXYZ  \n\t\r!?/'.,-_0123456789éßЖ中😀\u0301\u00a0\u2003\x1c")
    alphabet += ["'s", "'LL", " a", " Z", "  b", "\r\n", "http://x.y/z?q=1"]
    prose = " ".join(path.read_text() for path in sorted(POLICIES.glob("*.md"))) * 3
    texts = [prose]
    for _ in range(300):
        parts = [rng.choice(alphabet) for _ in range(rng.randint(1500, 4000))]
        texts.append("".join(parts))
    checked = 0
    for text in texts:
        pieces, hard = encoding_pieces(text)
        if hard:
            continue
        checked += 1
        assert "".join(pieces) == text and all(len(p) <= MAX_PIECE for p in pieces)
        whole = encoding.encode(text, disallowed_special=())
        assert [t for p in pieces for t in encoding.encode(p, disallowed_special=())] == whole
    assert checked > 200 and len(encoding_pieces(prose)[0]) > 5


def test_a_policy_with_a_huge_unbroken_run_is_refused_at_once(tmp_path):
    source = (POLICIES / "spam.md").read_text() + "\n" + "x" * 100_000 + "\n"
    started = time.perf_counter()
    with pytest.raises(PolicyError, match="2000 characters without a word boundary"):
        parse_policy(source, "0" * 64, "huge.md")
    assert time.perf_counter() - started < 5
    prose = (POLICIES / "spam.md").read_text() + "\nSee the examples above. " * 5000
    assert parse_policy(prose, "0" * 64, "long-prose.md").id == "spam"  # long prose is fine


# 5. Write failures were tracebacks.


def label_args(tmp_path, shard, output, *extra):
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"\0" * 16)
    return ["label", "--input", str(shard), "--policy", str(POLICIES / "spam.md"),
            "--model", str(model), "--output", str(output), *extra]  # fmt: skip


def test_an_output_that_cannot_be_written_fails_before_the_model_loads(tmp_path):
    shard = write_parquet(tmp_path / "in" / "a.parquet", {"id": ["1"], "text": ["x"]})
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(cli, label_args(tmp_path, shard, blocker / "out"))
    assert result.exit_code == EXIT_OUTPUT, result.output
    assert f"{blocker / 'out'}: cannot write the output folder" in result.output
    assert "Traceback" not in result.output


def test_a_full_disk_mid_run_stops_with_one_message_and_nothing_half_written(
    tmp_path, policies, monkeypatch
):
    import deltalake

    shard = write_parquet(tmp_path / "in" / "a.parquet", {"id": ["1"], "text": ["x"]})

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(deltalake.DeltaTable, "merge", full)
    with pytest.raises(OutputError, match="out: cannot write the label table: No space left"):
        run([shard], policies[:1], tmp_path / "out", answering())
    leftovers = [p.name for p in (tmp_path / "out").rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers


def test_a_file_size_limit_ends_the_run_with_exit_6_and_leaves_no_temporary(tmp_path):
    """A real failure, not a simulated one: RLIMIT_FSIZE makes writes fail with EFBIG."""
    draw = np.random.default_rng(0)
    texts = ["".join(draw.choice(list("abcdefgh "), 2000)) for _ in range(200)]
    shard = write_parquet(tmp_path / "in" / "a.parquet",
                          {"id": [str(i) for i in range(200)], "text": texts})  # fmt: skip
    code = (
        "import resource, sys; sys.path[:0] = [sys.argv[1], sys.argv[1] + '/tests'];"
        "import conftest; from helpers import answering, run; from batch.errors import "
        "SafeguardError; from batch.policy.files import load_policies;"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000));"
        "p = load_policies([conftest.POLICIES / 'spam.md']);\n"
        "try: run([sys.argv[2]], p, sys.argv[3], answering(), batch_size=10_000)\n"
        "except SafeguardError as e: print(e); sys.exit(e.exit_code)"
    )
    done = subprocess.run([sys.executable, "-c", code, str(ROOT), str(shard.parent),
                           str(tmp_path / "out")], capture_output=True, text=True)  # fmt: skip
    assert done.returncode == EXIT_OUTPUT, done.stdout + done.stderr[-2000:]
    assert str(tmp_path / "out") in done.stdout and "cannot write" in done.stdout
    assert not [p for p in (tmp_path / "out").rglob("*") if p.name.endswith(".tmp")]


# 6. Option values were not validated.


@pytest.mark.parametrize(
    "option, value",
    [("--max-tokens", "3000000000"), ("--temperature", "nan"), ("--top-p", "-3"),
     ("--top-p", "inf"), ("--audit-rate", "nan"), ("--max-attempts", "40000")],
)  # fmt: skip
def test_option_values_out_of_range_are_usage_errors(tmp_path, option, value):
    shard = write_parquet(tmp_path / "in" / "a.parquet", {"id": ["1"], "text": ["x"]})
    result = CliRunner().invoke(cli, label_args(tmp_path, shard, tmp_path / "out", option, value))
    assert result.exit_code == EXIT_USAGE and option in result.output, result.output


def test_a_job_spec_gets_the_same_validation(tmp_path):
    spec = tmp_path / "job.toml"
    spec.write_text('inputs = ["x"]\npolicies = ["p"]\noutput = "o"\nmodel = "m"\n'
                    "temperature = nan\n")  # fmt: skip
    result = CliRunner().invoke(cli, ["run", str(spec)])
    assert result.exit_code == EXIT_USAGE and "--temperature" in result.output


# 7. A policy whose prefix alone exceeds the context ran with every row too_long.


def test_a_policy_longer_than_the_context_is_refused_with_the_token_counts(tmp_path, policies):
    shard = write_parquet(tmp_path / "in" / "a.parquet", {"id": ["1"], "text": ["x"]})
    engine = answering()
    with pytest.raises(UsageError, match=r"spam: its prompt prefix is \d+ tokens.*--max-model-len"):
        run([shard], policies[:1], tmp_path / "out", engine, max_model_len=300)
    assert engine.requests_seen == 0


# 8. An output inside the input folder broke every later run.


@pytest.mark.parametrize("command", ["label", "verify"])
def test_an_output_inside_an_input_is_refused_with_a_message(tmp_path, command):
    shard = write_parquet(tmp_path / "in" / "a.parquet", {"id": ["1"], "text": ["x"]})
    args = label_args(tmp_path, shard.parent, tmp_path / "in" / "labels")
    if command == "verify":
        args = ["verify", *args[1:5], "--output", str(tmp_path / "in" / "labels")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == EXIT_USAGE
    assert "is inside --input" in result.output and "write it elsewhere" in result.output


@pytest.mark.parametrize(
    "pattern, output, refused",
    [("in/*", "in/labels", True), ("in/*.parquet", "in/labels", False),
     ("in/**/*.parquet", "in/labels", True), ("in", "in/_labels", False), ("in", "in", True),
     ("elsewhere", "in/labels", False)],
)  # fmt: skip
def test_an_output_is_refused_only_where_the_input_would_read_it(
    tmp_path, monkeypatch, pattern, output, refused
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    (tmp_path / "elsewhere").mkdir()
    if refused:
        with pytest.raises(UsageError, match="is inside --input"):
            check_output_outside([pattern], output)
    else:
        check_output_outside([pattern], output)


def test_an_output_named_like_a_hidden_folder_inside_the_input_runs_twice(tmp_path, policies):
    shard = write_parquet(tmp_path / "in" / "a.parquet", {"id": ["1", "2"], "text": ["x", "y"]})
    for _ in range(2):
        run([shard.parent], policies[:1], tmp_path / "in" / "_labels", answering())
    assert len(rows_of(tmp_path / "in" / "_labels")) == 2


# 9. Inputs as data lakes lay them out.


def spark_folder(root):
    for day in ("2026-11-01", "2026-11-02"):
        folder = root / f"date={day}"
        write_parquet(folder / "part-00000.snappy.parquet", {"id": [day], "text": ["x"]})
        (folder / "_SUCCESS").write_bytes(b"")
        (folder / ".part-00000.snappy.parquet.crc").write_bytes(b"crc")
        write_parquet(folder / "_temporary" / "0" / "part-9.parquet", {"id": ["t"], "text": ["y"]})
    write_parquet(root / "_delta_log" / "x.parquet", {"id": ["d"], "text": ["z"]})


def test_folder_globs_work_and_hidden_files_are_skipped(tmp_path):
    from batch.flow.sources import resolve_sources

    spark_folder(tmp_path / "spark")
    found = resolve_sources([str(tmp_path / "spark" / "date=2026-11-*") + "/"])
    assert [s for _, s in found] == ["date=2026-11-01/part-00000.snappy.parquet",
                                     "date=2026-11-02/part-00000.snappy.parquet"]  # fmt: skip
    found = resolve_sources([str(tmp_path / "spark" / "date=2026-11-01" / "*")])
    assert [s for _, s in found] == ["part-00000.snappy.parquet"]
    found = resolve_sources([str(tmp_path / "spark")])
    assert len(found) == 2  # not _delta_log, not _temporary, not the .crc


def test_a_file_named_explicitly_is_never_skipped(tmp_path):
    from batch.flow.read import InputError, inspect_inputs
    from batch.flow.sources import resolve_sources

    spark_folder(tmp_path / "spark")
    success = tmp_path / "spark" / "date=2026-11-01" / "_SUCCESS"
    (found,) = resolve_sources([str(success)])
    with pytest.raises(InputError, match="_SUCCESS: not a readable Parquet file"):
        inspect_inputs([found], "id", "text")


def test_a_spark_style_input_labels_end_to_end(tmp_path, policies):
    spark_folder(tmp_path / "spark")
    run([str(tmp_path / "spark" / "date=2026-11-*") + "/"], policies[:1], tmp_path / "out",
        answering())  # fmt: skip
    assert sorted(r["id"] for r in rows_of(tmp_path / "out")) == ["2026-11-01", "2026-11-02"]


# 10. A policy id with a trailing newline was accepted.


def test_a_policy_id_must_match_whole(tmp_path):
    source = (POLICIES / "spam.md").read_text().replace('id = "spam"', 'id = "spam\\n"')
    with pytest.raises(PolicyError, match="must be lower-case"):
        parse_policy(source, "0" * 64, "spam.md")
    from batch.policy.lint import lint_policy

    path = tmp_path / "spam.md"
    path.write_text(source)
    assert any("must be lower-case" in e for e in lint_policy(path).errors)


def test_the_checks_here_are_not_vacuous(prefilter_dir, tmp_path):
    """The valid inputs the tests above start from are accepted."""
    assert load(prefilter_dir).policy_id == "spam"
    copy = tmp_path / "copy"
    shutil.copytree(prefilter_dir, copy)
    rewrite(copy)
    assert load(copy).threshold == 0.5
    assert os.path.exists(copy / "prefilter.npz")
