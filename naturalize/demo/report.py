"""The demo's report: one self-contained HTML page (pictures embedded) beside the PNG files it shows.

In: a `ReportData` (what the data is, counts, picture paths, metrics, timings). Out: OUT/report.html.
Each picture is embedded as a data URI, so the page can be mailed on its own, and linked to its PNG
file under the output folder.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from naturalize.fsio import write_text

#: Section ids, in page order; every report has all of them.
SECTIONS: tuple[str, ...] = (
    "data",
    "segmentation",
    "contact-sheets",
    "training-curves",
    "confusion-matrix",
    "classification-report",
    "timings",
)


@dataclass
class ReportData:
    """Everything the page shows. Picture paths are absolute or relative to the report's folder."""

    title: str
    data_kind: str  # "drawn" or "real"
    data_note: str  # one paragraph: where the images come from
    counts: dict[str, dict[str, dict[str, int]]]  # split -> class -> origin (real/synthetic) -> n
    sheets: list[tuple[str, Path]]  # (caption, png)
    curves: list[tuple[str, Path]]  # (caption, png)
    confusion: list[tuple[str, Path]]  # (caption, png)
    classification_report: dict  # scikit-learn classification_report(output_dict=True)
    metrics: list[tuple[str, float, str]]  # (name, value, what it means and what it does not)
    timings: list[tuple[str, float, str]]  # (stage, seconds, note)
    segmentation: list[tuple[str, Path]] = field(default_factory=list)  # (caption, png)
    curation: list[tuple[str, int, str]] = field(default_factory=list)  # (count name, value, meaning)
    settings: dict[str, str] = field(default_factory=dict)
    machine: str = ""  # CPU count, load: timings depend on them


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
.banner{padding:.8em 1em;border-radius:6px;margin:1em 0}
.drawn{background:#fff3cd;border:1px solid #e0c36a} .real{background:#e7f3ff;border:1px solid #8bb8e8}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th:first-child,td:first-child{text-align:left} pre{background:#f6f6f6;padding:1em;overflow-x:auto}
td.note,th.note{text-align:left} td.note{color:#444;font-size:.92em;max-width:38em}
figure{margin:1em 0} figure img{max-width:100%;border:1px solid #ddd} figcaption{font-size:.9em;color:#555}
"""


def _img(caption: str, png: Path, base: Path) -> str:
    path = png if png.is_absolute() else base / png
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    try:
        href = path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        href = path.resolve().as_uri()
    return (
        f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
        f'<figcaption>{html.escape(caption)} (<a href="{html.escape(href)}">{html.escape(href)}</a>)'
        f"</figcaption></figure>"
    )


def _counts_table(counts: dict[str, dict[str, dict[str, int]]], source: str) -> str:
    splits = list(counts)
    classes = sorted({c for s in counts.values() for c in s})
    head = "".join(f"<th>{html.escape(s)} {source}</th><th>{html.escape(s)} Naturalize</th>" for s in splits)
    rows = []
    for c in classes:
        cells = "".join(
            f"<td>{counts[s].get(c, {}).get('real', 0)}</td><td>{counts[s].get(c, {}).get('synthetic', 0)}</td>"
            for s in splits
        )
        rows.append(f"<tr><td>{html.escape(c)}</td>{cells}</tr>")
    total = "".join(
        f"<td>{sum(v.get('real', 0) for v in counts[s].values())}</td>"
        f"<td>{sum(v.get('synthetic', 0) for v in counts[s].values())}</td>"
        for s in splits
    )
    rows.append(f"<tr><th>total</th>{total}</tr>")
    return f"<table><tr><th>class</th>{head}</tr>{''.join(rows)}</table>"


def _report_table(rep: dict) -> str:
    """scikit-learn's classification_report dict -> an HTML table (one row per class, then the averages)."""
    cols = ("precision", "recall", "f1-score", "support")
    head = "".join(f"<th>{c}</th>" for c in cols)
    rows = []
    for name, vals in rep.items():
        if not isinstance(vals, dict):  # "accuracy": a single number
            continue
        cells = "".join(f"<td>{int(vals[c])}</td>" if c == "support" else f"<td>{vals[c]:.3f}</td>" for c in cols)
        rows.append(f"<tr><td>{html.escape(name)}</td>{cells}</tr>")
    return f"<table><tr><th>class</th>{head}</tr>{''.join(rows)}</table>"


def _notes_table(rows: list, fmt: str) -> str:
    """(name, value, note) rows -> a three-column table; `fmt` formats the value."""
    body = "".join(
        f'<tr><td>{html.escape(n)}</td><td>{format(v, fmt)}</td><td class="note">{html.escape(t)}</td></tr>'
        for n, v, t in rows
    )
    head = '<tr><th></th><th>value</th><th class="note">what it means, and what it does not</th></tr>'
    return f"<table>{head}{body}</table>"


def render(data: ReportData, base: Path) -> str:
    """The report's HTML text; picture paths resolve against `base` (the report's folder)."""
    esc = html.escape
    kind_class = source = "drawn" if data.data_kind == "drawn" else "real"
    label = (
        "DRAWN DATA: procedurally drawn images, not real blood cells. The scores below only show "
        "that the pipeline runs; they say nothing about real accuracy."
        if data.data_kind == "drawn"
        else "REAL DATA: a subset of a PBC download."
    )
    settings = "".join(f"<tr><td>{esc(k)}</td><td>{esc(str(v))}</td></tr>" for k, v in data.settings.items())
    total = sum(t for _, t, _ in data.timings)
    timings = "".join(
        f'<tr><td>{esc(s)}</td><td>{t:.1f}</td><td class="note">{esc(n)}</td></tr>' for s, t, n in data.timings
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(data.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(data.title)}</h1>",
        f'<div class="banner {kind_class}"><strong>{esc(label)}</strong></div>',
        '<section id="data"><h2>Data</h2>',
        f"<p>{esc(data.data_note)}</p>",
        f"<p>Clean protocol: the {source} images are split train/val/test first; cell sprites come only from "
        f"training images; synthetic (Naturalize) images go only into train, so val and test hold {source} "
        f"images only.</p>",
        '<p>Images per class and split; "Naturalize" columns count synthetic images (train only). The counts say '
        "how much each class was topped up, not how realistic the images are (see the contact sheets).</p>",
        _counts_table(data.counts, source),
        f"<table>{settings}</table>" if settings else "",
        "</section>",
        '<section id="segmentation"><h2>Segmentation: sprites, plates and curation (training images)</h2>',
        _notes_table(data.curation, "d") if data.curation else "",
        *(_img(c, p, base) for c, p in data.segmentation),
        "</section>",
        f'<section id="contact-sheets"><h2>Contact sheets: {source} and Naturalize images</h2>',
        *(_img(c, p, base) for c, p in data.sheets),
        "</section>",
        '<section id="training-curves"><h2>Training curves</h2>',
        *(_img(c, p, base) for c, p in data.curves),
        "</section>",
        f'<section id="confusion-matrix"><h2>Confusion matrix (test split: {source} images only)</h2>',
        *(_img(c, p, base) for c, p in data.confusion),
        "</section>",
        f'<section id="classification-report"><h2>Classification report (test split: {source} images only)</h2>',
        _notes_table(data.metrics, ".4f"),
        _report_table(data.classification_report),
        "</section>",
        '<section id="timings"><h2>Per-stage timings</h2>',
        "<p>Wall-clock seconds per stage on this machine; they grow with other jobs' load (below) and are not "
        "benchmark figures.</p>",
        f'<table><tr><th>stage</th><th>seconds</th><th class="note">note</th></tr>{timings}'
        f"<tr><th>total</th><th>{total:.1f}</th><th></th></tr></table>",
        f"<p>{esc(data.machine)}</p>" if data.machine else "",
        "</section>",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def write_report(data: ReportData, path: str | Path) -> Path:
    """Write the page to `path` atomically and return it."""
    path = Path(path)
    write_text(path, render(data, path.parent))
    return path
