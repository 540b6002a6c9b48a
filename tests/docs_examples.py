"""The shell and Python examples of the README and the docs, as the docs test runs them.

An example is a fenced ```bash or ```python block. One that cannot run on a CI machine (it
needs GPUs, real weights, object storage credentials, a cluster) carries the reason on the
line just above its fence, as an HTML comment, which neither GitHub nor MkDocs shows:

    <!-- not runnable: needs NVIDIA GPUs and the real weights -->

docs/index.md is left out: it is the README with its links made relative (a test keeps them
equal), so its examples are the README's.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

LANGUAGES = ("bash", "python")
_FENCE = re.compile(r"^```(\S*)\s*$")
_NOT_RUNNABLE = re.compile(r"^<!--\s*not runnable:(.*?)-->\s*$")


@dataclass(frozen=True)
class Example:
    page: str  # relative to the repository, e.g. docs/output.md
    line: int  # the opening fence's line, 1-based
    language: str
    code: str
    not_runnable: str | None  # the reason, when marked; "" when marked without one

    @property
    def name(self) -> str:
        return f"{self.page}:{self.line}"


def examples_of(page: str, text: str) -> list[Example]:
    """Every bash/python block of one Markdown page, in order."""
    found: list[Example] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
        if end is None:
            raise ValueError(f"{page}:{i + 1}: a code block is never closed")
        if fence.group(1) in LANGUAGES:
            mark = _NOT_RUNNABLE.match(lines[i - 1]) if i else None
            code = "\n".join(lines[i + 1 : end]) + "\n"
            reason = mark.group(1).strip() if mark else None
            found.append(Example(page, i + 1, fence.group(1), code, reason))
        i = end + 1
    return found


def documentation_pages(root: Path) -> list[Path]:
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    return [p for p in pages if p.name != "index.md" or p.parent.name != "docs"]


def all_examples(root: Path) -> list[Example]:
    return [
        example
        for page in documentation_pages(root)
        for example in examples_of(str(page.relative_to(root)), page.read_text())
    ]


def run_example(example: Example, workspace: Path, env: dict[str, str], timeout: float = 300):
    """Run one example in ``workspace`` as a reader would paste it: bash with -e and
    pipefail (any failing command fails it), Python in a fresh interpreter."""
    script = workspace / f".example-{example.page.replace('/', '-')}-{example.line}"
    script.write_text(example.code)
    if example.language == "bash":
        command = ["bash", "-euo", "pipefail", str(script)]
    else:
        command = [sys.executable, str(script)]
    return subprocess.run(
        command, cwd=workspace, env=env, capture_output=True, text=True, timeout=timeout
    )


def syntax_errors(example: Example) -> str | None:
    """What is wrong with an example's syntax (bash -n, or Python's compiler), if anything:
    an example that is not run is still checked to be well formed."""
    if example.language == "python":
        try:
            compile(example.code, example.name, "exec")
        except SyntaxError as exc:
            return str(exc)
        return None
    done = subprocess.run(["bash", "-n"], input=example.code, capture_output=True, text=True)
    return (done.stderr or "bash -n failed") if done.returncode else None
