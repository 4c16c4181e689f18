"""Scene statistics of a class, measured on the bank's own source images (for `compose --scene matched`).

In: a Bank and a class. Out: SceneStats: one row per kept source image of the class holding exactly one
white cell: red cells found (border-cut ones and clumps included: curation `n_rbc`), platelets found,
the white cell's offset from the image centre (px, x right, y down) and the fraction of its red cells cut
by the border; cached in BANK/scenes/matched/<CLASS>.json (remade when the bank's rows or the code, CODE, change).
source_focus: per source image the blur (px) of its red cells' edges (variety.edge_sigma, median over at most
FOCUS_CELLS whole red cells), for `compose --wbc-focus`; cached in BANK/scenes/focus.json.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import cv2
import numpy as np

from naturalize.bank import Bank
from naturalize.codeversion import code_digest
from naturalize.compose.variety import edge_sigma
from naturalize.fsio import UserError, write_json
from naturalize.outputs import read_record

STATS_VERSION = 1
#: The modules whose code makes the matched statistics and the focus table (their digest is the caches' `code`: one
#: written by other code is measured again).
CODE = ("naturalize.compose.scene_stats", "naturalize.compose.variety", "naturalize.bank")


@dataclass(frozen=True)
class SceneStats:
    """Per source image of the class: n_rbc, n_plt, (dx, dy) white-cell offset, border-cut red-cell
    fraction; and the sources they were measured on."""

    cls: str
    sources: tuple[str, ...]
    n_rbc: np.ndarray
    n_plt: np.ndarray
    offset: np.ndarray
    border_fraction: np.ndarray

    def summary(self) -> dict:
        """Medians and ranges (what a person checks against real crops)."""
        q = lambda a: [float(np.percentile(a, p)) for p in (10, 50, 90)]  # noqa: E731
        return {
            "images": len(self.sources),
            "n_rbc_p10_50_90": q(self.n_rbc),
            "n_plt_p10_50_90": q(self.n_plt),
            "offset_x_p10_50_90": q(self.offset[:, 0]),
            "offset_y_p10_50_90": q(self.offset[:, 1]),
            "border_cut_fraction_median": float(np.median(self.border_fraction)),
        }


def _hash(bank: Bank, cls: str) -> str:
    """sha256 of the class's curation rows and the sprite rows of those images."""
    sources = {r["source"] for r in bank.curation if r.get("label") == cls}
    rows = sorted(json.dumps(r, sort_keys=True) for r in bank.curation if r["source"] in sources)
    sprites = sorted(repr(s) for s in bank.sprites if s.source in sources)
    return hashlib.sha256(json.dumps([STATS_VERSION, rows, sprites]).encode()).hexdigest()


def measure(bank: Bank, cls: str) -> SceneStats:
    """The class's scene statistics from the bank's tables (see module doc)."""
    by_source: dict[str, list] = {}
    for s in bank.sprites:
        by_source.setdefault(s.source, []).append(s)
    size = {b.source: (b.width, b.height) for b in bank.backgrounds}
    sources, n_rbc, n_plt, offset, border = [], [], [], [], []
    for r in sorted(bank.curation, key=lambda r: r["source"]):
        if r.get("label") != cls or r.get("keep") != "1" or r.get("n_wbc") != "1" or r["source"] not in size:
            continue
        rows = by_source.get(r["source"], [])
        wbc = [s for s in rows if s.kind == "WBC"]
        if len(wbc) != 1:
            continue
        w, h = size[r["source"]]
        rbc = [s for s in rows if s.kind == "RBC"]
        sources.append(r["source"])
        n_rbc.append(int(r["n_rbc"]))
        n_plt.append(int(r["n_plt"]))
        offset.append(((wbc[0].x0 + wbc[0].x1 - w) / 2, (wbc[0].y0 + wbc[0].y1 - h) / 2))
        border.append(sum(s.touches_border for s in rbc) / max(1, len(rbc)))
    if not sources:
        raise UserError(
            f"bank {bank.root} has no kept {cls} image with one white cell to measure a matched scene on; "
            f"segment {cls} training images into it, or use --scene paper"
        )
    return SceneStats(cls, tuple(sources), np.array(n_rbc), np.array(n_plt), np.array(offset, float), np.array(border))


def scene_stats(bank: Bank, cls: str) -> SceneStats:
    """measure(), read from BANK/scenes/matched/<CLASS>.json when made from the same rows, else measured
    and stored there (atomically; a read-only bank is measured every time)."""
    path = bank.root / "scenes" / "matched" / f"{cls}.json"
    key = _hash(bank, cls)
    d = read_record(path) or {}  # none, or not a JSON object: made again
    if d.get("rows") == key and d.get("code") == code_digest(*CODE):
        return SceneStats(
            cls,
            tuple(d["sources"]),
            np.array(d["n_rbc"]),
            np.array(d["n_plt"]),
            np.array(d["offset"], float).reshape(-1, 2),
            np.array(d["border_fraction"]),
        )
    st = measure(bank, cls)
    try:
        write_json(
            path,
            {
                "version": STATS_VERSION,
                "code": code_digest(*CODE),
                "rows": key,
                "class": cls,
                "summary": st.summary(),
                "sources": list(st.sources),
                "n_rbc": st.n_rbc.tolist(),
                "n_plt": st.n_plt.tolist(),
                "offset": st.offset.tolist(),
                "border_fraction": st.border_fraction.tolist(),
            },
        )
    except OSError:
        pass
    return st


FOCUS_VERSION = 1
#: Whole red cells per source image the focus is measured on (the first by sprite id).
FOCUS_CELLS = 8


def _focus_rows(bank: Bank) -> dict[str, list]:
    by_source: dict[str, list] = {}
    for r in sorted(bank.sprites, key=lambda r: r.sprite_id):
        if r.kind == "RBC" and not r.touches_border and len(by_source.setdefault(r.source, [])) < FOCUS_CELLS:
            by_source[r.source].append(r)
    return by_source


def measure_focus(bank: Bank, rows: dict[str, list]) -> dict[str, float]:
    """source -> median edge blur (px) of its red cells in `rows` (sources with none measurable left out)."""
    out = {}
    for source, cells in sorted(rows.items()):
        # edge_sigma reads green and alpha only: a mask-only row's RGBA (cut from its source) serves as BGRA
        arrays = [
            cv2.imread(str(bank.root / r.relpath), cv2.IMREAD_UNCHANGED) if r.has_png else bank.load_sprite(r)
            for r in cells
        ]
        measured = [edge_sigma(a) for a in arrays if a is not None and a.ndim == 3 and a.shape[2] == 4]
        sig = [v for v in measured if v is not None]
        if sig:
            out[source] = round(float(np.median(sig)), 4)
    return out


def source_focus(bank: Bank) -> dict[str, float]:
    """measure_focus of every source of the bank, read from BANK/scenes/focus.json when made from the same
    rows, else measured and stored there (atomically; a read-only bank is measured every time)."""
    rows = _focus_rows(bank)
    text = json.dumps([FOCUS_VERSION, sorted(repr(r) for v in rows.values() for r in v)])
    key = hashlib.sha256(text.encode()).hexdigest()
    path = bank.root / "scenes" / "focus.json"
    d = read_record(path) or {}  # none, or not a JSON object: measured again
    if d.get("rows") == key and d.get("code") == code_digest(*CODE):
        return {k: float(v) for k, v in d["sigma"].items()}
    sigma = measure_focus(bank, rows)
    try:
        write_json(path, {"version": FOCUS_VERSION, "code": code_digest(*CODE), "rows": key, "sigma": sigma})
    except OSError:
        pass
    return sigma
