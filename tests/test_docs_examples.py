"""Docs that run: every shell and Python example in the README and docs/ is either run here,
as a reader would paste it, on a small workspace of real label tables (its exit code must be
0), or marked not runnable with the reason (and still checked to be well formed)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import ROOT, write_parquet
from docs_examples import Example, all_examples, run_example, syntax_errors
from helpers import answering, run, table_version

from batch.output.layout import candidate_path
from batch.policy.files import load_policies

EXAMPLES = all_examples(ROOT)
RUNNABLE = [e for e in EXAMPLES if e.not_runnable is None]
MARKED = [e for e in EXAMPLES if e.not_runnable is not None]
# The candidate table the relabelling page diffs against (what `relabel --sample` writes).
CANDIDATE = "20261129T010643Z-5c1b528d"


def _spam_when(word: str):
    """A scripted model: spam '1' for texts containing ``word``, a well-formed 'no' otherwise."""

    def respond(request):
        from batch.vocab import load_encoding

        prompt = load_encoding().decode(list(request.prompt_token_ids))
        if "# Harassment and Hate Policy" in prompt:
            return '{"violation": 0, "policy_category": null, "rationale": "Fine."}'
        text = prompt.rsplit("user<|message|>", 1)[1]
        return "1" if word in text else "0"

    return answering(respond)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """What the examples name, relative to where they run: the repository's policies/ and
    jobs/, shards/ of short messages, GOLD.parquet, the label tables labels/ (several
    versions, a relabel candidate), OUT (a copy), labels-20b/ and labels-120b/ (two models
    that disagree on some rows)."""
    root = tmp_path_factory.mktemp("docs")
    for name in ("policies", "jobs"):
        (root / name).symlink_to(ROOT / name)
    spam = [f"you won a prize {i}, call now" for i in range(12)]
    ham = [f"see you at lunch on day {i}" for i in range(18)]
    texts = spam + ham
    ids = [f"m{i}" for i in range(len(texts))]
    half = len(texts) // 2
    write_parquet(root / "shards" / "a.parquet", {"id": ids[:half], "text": texts[:half]})
    write_parquet(root / "shards" / "b.parquet", {"id": ids[half:], "text": texts[half:]})
    write_parquet(root / "GOLD.parquet", {"id": ids, "spam": [int("prize" in t) for t in texts]})
    policies = load_policies([ROOT / "policies" / "spam.md", ROOT / "policies" / "harassment.md"])
    shards = [root / "shards"]
    run(shards, policies[:1], root / "labels", _spam_when("prize"))
    run(shards, policies, root / "labels", _spam_when("prize"))
    assert table_version(root / "labels") > 1  # the docs read version 1 as an earlier one
    shutil.copytree(root / "labels", root / "OUT")
    run(shards, policies[:1], candidate_path(root / "labels", CANDIDATE), _spam_when("call"))
    run(shards, policies[:1], root / "labels-20b", _spam_when("prize"))
    run(shards, policies[:1], root / "labels-120b", _spam_when("won a prize 1"))
    return root


def _environment() -> dict[str, str]:
    # The examples call `safeguard-batch` and `python` as a reader's shell would find them.
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}


@pytest.mark.parametrize("example", RUNNABLE, ids=lambda e: e.name)
def test_a_runnable_example_exits_0(example: Example, workspace):
    done = run_example(example, workspace, _environment())
    assert done.returncode == 0, (
        f"{example.name} exited {done.returncode}:\n{example.code}\n{done.stderr[-3000:]}"
    )


@pytest.mark.parametrize("example", MARKED, ids=lambda e: e.name)
def test_an_example_not_run_says_why_and_is_well_formed(example: Example):
    assert len(example.not_runnable) >= 10, f"{example.name}: say why it cannot run here"
    assert syntax_errors(example) is None, f"{example.name}: {syntax_errors(example)}"


def test_the_examples_are_found_and_most_are_run():
    pages = {e.page for e in EXAMPLES}
    assert {"README.md", "docs/output.md", "docs/relabelling.md", "docs/report.md"} <= pages
    assert len(RUNNABLE) >= 8 and {e.language for e in RUNNABLE} == {"bash", "python"}


def test_a_broken_example_fails_the_same_runner(workspace):
    """The runner is what the test above uses: a command that fails part way through a block
    (a table that does not exist, then one that does) fails the example."""
    broken = Example(
        "docs/broken.md", 1, "bash",
        "safeguard-batch diff labels/ nowhere/\nsafeguard-batch report OUT --html r.html\n",
        None,
    )  # fmt: skip
    done = run_example(broken, workspace, _environment())
    assert done.returncode != 0 and "nowhere" in done.stderr
    assert not (workspace / "r.html").exists()  # -e: nothing after the failure ran
    python = Example("docs/broken.md", 5, "python", 'import polars as pl\npl.read_delta("no")\n',
                     None)  # fmt: skip
    assert run_example(python, workspace, _environment()).returncode != 0


def test_a_block_marked_without_a_reason_or_with_bad_syntax_is_caught():
    from docs_examples import examples_of

    page = (
        "<!-- not runnable: -->\n```bash\nls\n```\n\n"
        "<!-- not runnable: needs GPUs -->\n```bash\nif then\n```\n"
        "```python\nprint(\n```\n"
    )
    blank, bad_bash, bad_python = examples_of("x.md", page)
    assert blank.not_runnable == "" and bad_bash.not_runnable == "needs GPUs"
    assert syntax_errors(bad_bash) and syntax_errors(bad_python) and bad_python.not_runnable is None


def test_the_examples_wrote_what_they_say(workspace):
    """The runnable examples' outputs exist and hold what the pages promise (the test above
    runs them; this runs them again and looks at what they left)."""
    for example in RUNNABLE:  # a second run over the same outputs works as the first did
        done = run_example(example, workspace, _environment())
        assert done.returncode == 0, f"{example.name} again: {done.stderr[-2000:]}"
    assert (workspace / "report.html").stat().st_size > 1000
    assert (workspace / "prefilters" / "spam" / "card.json").is_file()
    assert (workspace / "flips.json").is_file() and (workspace / "flips.md").is_file()
    tasks = workspace / "review" / "2026-11-30" / "tasks.json"
    assert tasks.is_file() and tasks.stat().st_size > 100
    assert pq.read_table(workspace / "GOLD.parquet").num_rows == 30
