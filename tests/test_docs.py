"""The manual (docs/, a MkDocs site built with `strict: true`) builds: every relative link names a page of the site."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def broken_links(page: Path) -> list[str]:
    """A docs/ page -> its relative Markdown links whose target is not a file under docs/ (`mkdocs build --strict`
    aborts on them: a file outside docs_dir, e.g. ../BENCHMARKS.md, is not part of the site)."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:|#", t)]
    return [
        t for t in local if t and not ((page.parent / t).resolve().is_relative_to(DOCS) and (page.parent / t).is_file())
    ]


def test_every_relative_link_in_the_manual_names_a_page_of_the_site():
    broken = {p.name: b for p in sorted(DOCS.glob("*.md")) if (b := broken_links(p))}
    assert broken == {}
