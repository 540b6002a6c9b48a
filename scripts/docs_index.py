"""Write docs/index.md (the docs' home page) from README.md, with its links made relative to
docs/, so the two never drift apart (tests/test_docs_reads.py checks it).

    python scripts/docs_index.py
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README_LINE = "Built with MkDocs (`.venv/bin/mkdocs serve`, or read the Markdown in `docs/`):"
INDEX_LINE = "The pages (their Markdown is in `docs/`; `.venv/bin/mkdocs serve` serves them):"


def index_from_readme(readme: str) -> str:
    return readme.replace("](docs/", "](").replace(README_LINE, INDEX_LINE)


def main() -> int:
    readme = (ROOT / "README.md").read_text()
    (ROOT / "docs" / "index.md").write_text(index_from_readme(readme))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
