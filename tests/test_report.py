"""The HTML report: its figures are the table's and the manifests', every datum is escaped,
a damaged manifest never stops it, and it reads only the columns it needs."""

import json
import re
from html.parser import HTMLParser

import polars as pl
import pytest
from click.testing import CliRunner
from conftest import POLICIES, write_parquet
from helpers import answering, run
from test_prefilter import synthetic

from batch.cli import cli
from batch.errors import EXIT_BAD_INPUT
from batch.policy.files import load_policies
from batch.prefilter.model import load, save
from batch.prefilter.train import train_prefilter
from batch.reports.html import data as report_data
from batch.reports.html.page import CSP, build_report, render_html


class Figures(HTMLParser):
    """``data-figure`` keys and values, and every tag name, of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, str] = {}
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        found = dict(attrs)
        if "data-figure" in found:
            self.figures[found["data-figure"]] = found["data-value"]


def figures_of(page: str) -> Figures:
    parser = Figures()
    parser.feed(page)
    return parser


def answers(request):
    """'1' for texts with 'prize', garbage for texts with 'weird', '0' otherwise."""
    from batch.vocab import load_encoding

    prompt = load_encoding().decode(list(request.prompt_token_ids))
    if "# Harassment and Hate Policy" in prompt:
        return '{"violation": 0, "policy_category": null, "rationale": "Fine."}'
    text = prompt.rsplit("user<|message|>", 1)[1]
    return "1" if "prize" in text else "garbage" if "weird" in text else "0"


@pytest.fixture
def labelled(tmp_path):
    """An output of two runs: 12 rows, then 6 more (2 prize, 1 weird, 1 empty per run)."""
    policies = load_policies([POLICIES / "spam.md", POLICIES / "harassment.md"])
    texts = ["win a prize", "a prize", "weird", "", "hello", "see you", "ok", "fine", "x", "y"]
    write_parquet(tmp_path / "in" / "a.parquet", {"id": [f"a{i}" for i in range(10)],
                  "text": texts})  # fmt: skip
    run([tmp_path / "in"], policies, tmp_path / "out", answering(answers))
    write_parquet(tmp_path / "in" / "b.parquet", {"id": ["b0", "b1", "b2"],
                  "text": ["prize time", "later", ""]})  # fmt: skip
    run([tmp_path / "in"], policies, tmp_path / "out", answering(answers))
    return tmp_path / "out"


def test_the_page_shows_the_tables_figures_and_each_runs_manifest(labelled, tmp_path):
    page = tmp_path / "report.html"
    result = CliRunner().invoke(cli, ["report", str(labelled), "--html", str(page)])
    assert result.exit_code == 0, result.output
    shown = figures_of(page.read_text()).figures
    rows = pl.read_delta(str(labelled))
    for pid in ("spam", "harassment"):
        mine = rows.filter(pl.col("policy_id") == pid)
        assert shown[f"{pid}.rows"] == str(mine.height) == "13"
        for status, n in mine.group_by("status").len().iter_rows():
            assert shown[f"{pid}.status.{status}"] == str(n)
        for origin, n in mine.group_by("origin").len().iter_rows():
            assert shown[f"{pid}.origin.{origin}"] == str(n)
    # spam: the 3 prize rows are the violations among the ok rows
    ok = rows.filter((pl.col("policy_id") == "spam") & (pl.col("status") == "ok"))
    assert shown["spam.violations"] == str(ok["violation"].sum()) == "3"
    assert float(shown["spam.violation_rate"]) == pytest.approx(3 / ok.height)
    for path in (labelled / "_runs").glob("*.json"):
        manifest = json.loads(path.read_text())
        run_id = manifest["run_id"]
        assert shown[f"run.{run_id}.rows"] == str(manifest["counts"]["rows"])
        assert shown[f"run.{run_id}.requests_sent"] == str(manifest["counts"]["requests_sent"])
        assert shown[f"run.{run_id}.prompt_tokens"] == str(manifest["tokens"]["prompt"])
        assert shown[f"run.{run_id}.gpu_seconds"] == ""  # the scripted engine holds no GPU
    assert "report written to" in result.output


def test_the_page_is_self_contained_and_forbids_itself_the_network(labelled):
    page = render_html(build_report(labelled))
    tags = figures_of(page).tags
    assert not tags & {"script", "link", "img", "iframe", "object", "embed"}
    assert f'content="{CSP}"' in page and "default-src 'none'" in CSP
    assert not re.search(r"(src|href)=\"(https?:)?//", page)


def test_every_datum_is_escaped(labelled):
    evil = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    (labelled / "_diffs").mkdir()
    diff = {"policies": [{"policy_id": evil, "flips": 1, "shared": 2, "flip_rate": 0.5,
            "matrix": {evil: {"0": 1}}, "examples": [{"id": evil, "old": "0", "new": evil,
            "text": evil, "old_rationale": evil, "new_rationale": evil}]}]}  # fmt: skip
    (labelled / "_diffs" / "20261129T000000Z-evil.json").write_text(json.dumps(diff))
    manifest = next((labelled / "_runs").glob("*.json"))
    data = json.loads(manifest.read_text())
    data["command"] = ["safeguard-batch", evil]
    data["model"] = evil
    manifest.write_text(json.dumps(data))
    page = render_html(build_report(labelled))
    assert "<script" not in page and "<img" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 6


def test_a_damaged_manifest_or_diff_is_listed_not_fatal(labelled, tmp_path):
    (labelled / "_runs" / "20261129T000000Z-broken.json").write_text('{"counts": ')
    (labelled / "_runs" / "20261129T000001Z-list.json").write_text("[1, 2]")
    (labelled / "_runs" / "20261129T000002Z-odd.json").write_text(
        json.dumps({"run_id": "odd", "counts": [1], "tokens": {"prompt": "many"}})
    )
    page = render_html(build_report(labelled))
    assert "Files that could not be read" in page
    assert "20261129T000000Z-broken.json" in page and "20261129T000001Z-list.json" in page
    assert figures_of(page).figures["run.odd.prompt_tokens"] == "many"


def test_an_output_without_a_table_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(cli, ["report", str(tmp_path / "empty")])
    assert result.exit_code == 2 and "no label table" in result.output


def test_only_the_columns_a_figure_needs_are_read(labelled, monkeypatch):
    """The reasoning and rationale columns (the bulk of a big table) are never scanned."""
    selected: list[list[str]] = []
    real = pl.LazyFrame.select

    def spy(self, *columns, **named):
        selected.append([c for c in columns if isinstance(c, str)] + [
            x for c in columns if isinstance(c, list) for x in c])  # fmt: skip
        return real(self, *columns, **named)

    monkeypatch.setattr(pl.LazyFrame, "select", spy)
    report_data.table_summary(labelled)
    read = {c for cols in selected for c in cols}
    assert read and not read & {"reasoning", "rationale", "error", "id", "content_sha256"}


def test_a_score_histogram_appears_once_scores_exist():
    frame = pl.LazyFrame({"policy_id": ["spam"] * 5, "score": [0.0, 0.02, 0.5, 0.99, None]})
    histogram = report_data._score_histograms(frame)["spam"]
    assert len(histogram) == report_data.SCORE_BINS and sum(histogram) == 4
    assert histogram[0] == 2 and histogram[10] == 1 and histogram[-1] == 1


def test_a_job_spec_can_ask_for_the_report(tmp_path):
    spec = tmp_path / "job.toml"
    spec.write_text(
        f'inputs = ["{tmp_path}"]\npolicies = ["{POLICIES / "spam.md"}"]\n'
        f'output = "{tmp_path / "out"}"\nmodel = "m"\nreport = "{tmp_path / "r.html"}"\n'
    )
    result = CliRunner().invoke(cli, ["run", str(spec), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert f"--report {tmp_path / 'r.html'}" in result.output


def test_prefilter_routing_and_its_audited_miss_rate_are_shown(tmp_path):
    policies = load_policies([POLICIES / "spam.md"])
    texts, labels = synthetic()
    save(train_prefilter(texts, labels, policies[0], recall=0.95, c_grid=(4.0,)), tmp_path / "pf")
    chat = [f"see you at dinner {i}" for i in range(40)]
    shard = write_parquet(tmp_path / "in" / "a.parquet", {"id": list(map(str, range(40))),
                          "text": chat})  # fmt: skip
    # The model disagrees with the prefilter on every item ending in 7.
    engine = answering(lambda r: "1" if "7<|end|>" in _decode(r) else "0")
    result = run([shard], policies, tmp_path / "out", engine,
                 prefilters={"spam": load(tmp_path / "pf")}, audit_rate=0.5)  # fmt: skip
    counts = result.manifest["per_policy"]["spam"]
    shown = figures_of(render_html(build_report(tmp_path / "out"))).figures
    assert shown["spam.prefiltered"] == str(counts["prefiltered"]) != "0"
    assert shown["spam.audited"] == str(counts["audited"]) != "0"
    assert shown["spam.audit_misses"] == str(counts["audit_violations"])


def _decode(request):
    from batch.vocab import load_encoding

    return load_encoding().decode(list(request.prompt_token_ids))


def test_a_run_that_fails_keeps_its_exit_code_when_no_report_can_be_written(tmp_path, capsys):
    from batch.cli.jobs import _with_report

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.parquet").write_bytes(b"not parquet")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    args = ["label", "--input", str(tmp_path / "in"), "--policy", str(POLICIES / "spam.md"),
            "--model", str(model), "--output", str(tmp_path / "out"),
            "--report", str(tmp_path / "r.html")]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == EXIT_BAD_INPUT and not (tmp_path / "r.html").exists()
    # A run that ends with a failing exit code and no table: that code, and a note.
    failing = _with_report(lambda params, command, job: 4)
    params = {"output": str(tmp_path / "nothing"), "report": str(tmp_path / "r.html")}
    assert failing(params, [], None) == 4
    assert "report not written" in capsys.readouterr().err


def test_a_corrupt_data_file_is_a_clear_error_not_a_panic(labelled):
    for victim in (labelled / "policy_id=spam").glob("*.parquet"):
        victim.write_bytes(b"PAR1 this is not parquet PAR1")
    gold = labelled.parent / "in"
    commands = [["report", str(labelled)],
                ["eval", "--labels", str(labelled), "--gold", str(gold)],
                ["diff", str(labelled), str(labelled), "--old-version", "1"]]  # fmt: skip
    for args in commands:
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2 and "a data file cannot be read" in result.output, args


def _varied(flip_weird: bool = False):
    """Spam '1' for prize texts, garbage (or, with ``flip_weird``, '1') for weird ones; each
    request's confidence varies with its text, so scores spread over [0.5, 1)."""
    from batch.engine.scripted import ScriptedEngine
    from batch.vocab import load_encoding

    encoding = load_encoding()

    def respond(request):
        prompt = encoding.decode(list(request.prompt_token_ids))
        if "# Harassment and Hate Policy" in prompt:
            return '{"violation": 0, "policy_category": null, "rationale": "Fine."}'
        text = prompt.rsplit("user<|message|>", 1)[1]
        if "weird" in text:
            return "1" if flip_weird else "garbage"
        return "1" if "prize" in text else "0"

    def confidence(request):
        return 0.5 + (sum(request.prompt_token_ids[-12:]) % 50) / 100

    return ScriptedEngine(respond, confidence=confidence)


@pytest.fixture
def varied(tmp_path):
    policies = load_policies([POLICIES / "spam.md", POLICIES / "harassment.md"])
    texts = [f"{kind} {i}" for i in range(8) for kind in ("prize <b>x</b>", "weird", "hello")]
    write_parquet(tmp_path / "in" / "a.parquet", {"id": [f"r{i}" for i in range(len(texts))],
                  "text": texts})  # fmt: skip
    run([tmp_path / "in"], policies, tmp_path / "out", _varied())
    return tmp_path


def test_examples_are_the_top_violations_the_most_uncertain_and_failures_with_their_text(varied):
    out = varied / "out"
    data = build_report(out, threshold=0.6)
    spam = next(p for p in data["policies"] if p["policy_id"] == "spam")
    rows = pl.read_delta(str(out)).filter(pl.col("policy_id") == "spam")
    by_kind: dict[str, list] = {}
    for example in spam["examples"]:
        by_kind.setdefault(example["kind"], []).append(example)
    ok = rows.filter(pl.col("status") == "ok")
    top = ok.filter(pl.col("violation")).sort("score", descending=True)["score"].head(5)
    assert [e["score"] for e in by_kind["violation"]] == top.to_list()
    nearest = sorted(abs(s - 0.6) for s in ok["score"])[:5]
    assert sorted(abs(e["score"] - 0.6) for e in by_kind["uncertain"]) == nearest
    assert len(by_kind["failure"]) == 5 and {e["status"] for e in by_kind["failure"]} == {
        "parse_error"
    }
    kinds = ["prize <b>x</b>", "weird", "hello"]
    for example in spam["examples"]:  # the text read back from the source file
        row = int(example["id"][1:])
        assert example["text"] == f"{kinds[row % 3]} {row // 3}"
    page = render_html(data)
    assert "prize &lt;b&gt;x&lt;/b&gt;" in page and "prize <b>x</b>" not in page
    assert figures_of(page).figures["spam.examples.violation"] == "5"


def test_the_last_runs_changes_count_new_relabelled_and_flipped_rows(varied):
    out = varied / "out"
    assert build_report(out)["changes"] is None  # one run: nothing to compare
    before = pl.read_delta(str(out))
    policies = load_policies([POLICIES / "spam.md", POLICIES / "harassment.md"])
    write_parquet(varied / "in" / "b.parquet", {"id": ["n0", "n1"], "text": ["new", "prize"]})
    run([varied / "in"], policies, out, _varied(flip_weird=True))  # retries the 8 failures
    changes = build_report(out)["changes"]
    spam = next(p for p in changes["policies"] if p["policy_id"] == "spam")
    failed = before.filter((pl.col("policy_id") == "spam") & (pl.col("status") != "ok")).height
    assert failed == 8
    assert (spam["written"], spam["new"], spam["relabelled"], spam["flips"]) == (10, 2, 8, 8)
    assert spam["matrix"] == {"parse_error": {"1": 8}} and spam["removed"] == 0
    harassment = next(p for p in changes["policies"] if p["policy_id"] == "harassment")
    assert (harassment["new"], harassment["relabelled"]) == (2, 0)
    shown = figures_of(render_html(build_report(out))).figures
    assert shown["changes.spam.flips"] == "8" and shown["changes.spam.relabelled"] == "8"


def test_a_shrunk_file_shows_as_rows_removed(varied):
    out = varied / "out"
    policies = load_policies([POLICIES / "spam.md"])
    write_parquet(varied / "in" / "a.parquet", {"id": ["r0", "r1"], "text": ["prize 0", "x"]})
    run([varied / "in"], policies, out, _varied())
    spam = build_report(out)["changes"]["policies"][0]
    assert spam["policy_id"] == "spam" and spam["removed"] == 22 and spam["written"] == 2


def test_the_trend_shows_violation_and_failure_rates_per_run(varied):
    out = varied / "out"
    policies = load_policies([POLICIES / "spam.md", POLICIES / "harassment.md"])
    run([varied / "in"], policies, out, _varied(flip_weird=True))
    spam = next(p for p in build_report(out)["policies"] if p["policy_id"] == "spam")
    first, second = spam["runs"]
    assert (first["failures"], first["rows"], first["failure_rate"]) == (0, 16, 0.0)
    assert (second["rows"], second["violations"], second["violation_rate"]) == (8, 8, 1.0)
    page = render_html(build_report(out))
    assert "violation rate" in page and "failure rate" in page
    assert figures_of(page).figures[f"spam.run.{first['run_id']}.failures"] == "0"


def test_the_histogram_has_axes_counts_and_the_threshold():
    from batch.reports.html import svg

    counts = [0] * 20
    counts[3], counts[19] = 7, 1_234_567
    chart = svg.histogram(counts, "spam scores", threshold=0.7)
    assert ">1.2M</text>" in chart and ">7</text>" in chart  # bar counts
    assert ">score</text>" in chart and ">0.25</text>" in chart and ">2.0M</text>" in chart
    assert "threshold 0.7" in chart and 'stroke-dasharray="4 3"' in chart
    x = 44 + (560 - 44 - 8) * 0.7
    assert f'x1="{x:.1f}"' in chart
