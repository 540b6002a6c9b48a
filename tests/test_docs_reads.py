"""The docs' ways of reading the table (docs/output.md) run as written, each in a fresh
process: the crash they replace ended the process, not a call."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT, write_shards
from docs_examples import examples_of
from helpers import answering, run, table_version


def docs_block(after: str) -> str:
    """The first Python example of docs/output.md after the text ``after``."""
    text = (ROOT / "docs" / "output.md").read_text()
    line = text[: text.index(after)].count("\n") + 1
    examples = examples_of("docs/output.md", text)
    return next(e.code for e in examples if e.language == "python" and e.line > line)


def test_the_docs_read_examples_run_and_exit_cleanly(tmp_path, policies):
    output = tmp_path / "OUT"
    inputs = write_shards(tmp_path / "in", [3, 2])
    run([inputs], policies[:1], output, answering())
    first = table_version(output)
    run([inputs], policies, output, answering())  # later versions, for time travel
    code = docs_block("Read the current labels").replace("version=1)", f"version={first})")
    code += "\nassert current.height == 10 and table.num_rows == 10 and spam.height == 5\n"
    code += "assert before.height == 5 and len(commits) >= 2\n"
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]


def test_the_docs_home_page_is_the_readme_with_its_links_made_relative():
    from docs_index import index_from_readme

    readme = (ROOT / "README.md").read_text()
    index = (ROOT / "docs" / "index.md").read_text()
    assert "](docs/" in readme and "](docs/" not in index
    assert index == index_from_readme(readme)  # edit README.md, then: scripts/docs_index.py
