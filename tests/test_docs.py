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


def segment_outs(block: str) -> dict[str, set[str]]:
    """A fenced code block -> for each `naturalize segment` --out, the inputs (SRC and --split) written there."""
    outs: dict[str, set[str]] = {}
    for line in block.replace("\\\n", " ").splitlines():
        if m := re.match(r"\s*naturalize segment (\S+)(.*)", line):
            src, rest = m.groups()
            out = re.search(r"--out (\S+)", rest)
            split = re.search(r"--split (\S+)", rest)
            outs.setdefault(out.group(1) if out else "bank", set()).add(f"{src} {split.group(1) if split else ''}")
    return outs


def test_a_block_of_segment_lines_never_writes_two_inputs_into_one_bank():
    """A user copying a block runs its lines in order: a second `segment` of another input or split into the same
    --out is refused (the bank records its settings), so a block that does so stops half way."""
    clashes = [
        (page.name, out, sorted(inputs))
        for page in sorted(DOCS.glob("*.md"))
        for block in re.findall(r"```\w*\n(.*?)```", page.read_text(encoding="utf-8"), re.S)
        for out, inputs in segment_outs(block).items()
        if len(inputs) > 1
    ]
    assert clashes == []
