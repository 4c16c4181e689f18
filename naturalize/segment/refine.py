"""Learned refinement of white-cell masks: pick, per white cell, the best of a few cheap candidate masks.

In: the classical backend's white-cell labels at its work size and the colour maps it made them from
(`RefineInput`). Out: the labels with each white cell replaced by the candidate a tiny learned model
scores highest. Candidates (`CANDIDATES`): the mask itself; grown by one or two pixels or shrunk by one;
grown into adjacent white-cell-coloured pixels (cytoplasm the watershed lost to touching red cells or to
the plate: monocytes, metamyelocytes; three colour/paleness limits); the round body (opened with a disk
nearly as wide as the cell: attached platelets and granules cut off); and the dark body (very dark stain
closed and filled: a basophil without the pale lilac rim that OI-PBC's boxes leave out). Each candidate
gets `FEATURES` (cell-level: size, solidity, nucleus share and darkness, colour, contact; candidate-level:
kind, area and box ratios to the mask, box fill, solidity, contact, colour of the pixels added or
removed), and, for the groups named in `BORDER_GROUPS` (edge, rel, side), segment/border.py's image evidence
at each candidate's border. The model (segment/outline.py's perceptron class; sigmoid output:
the probability that the candidate's box has IoU >= 0.8 with the true cell's box) is trained by
`benchmarks/train_wbc_refine.py` on the tuning half of the annotated sample; its weights are the small JSON
file beside this module. The image's class (its PBC label, known when a bank is made) is a feature too, and
the weights file lists the classes the refinement is used for (those it helped on held-out tuning images) and
each one's margin; a cell of another or an unknown class keeps its mask. A candidate other than the mask itself
is taken when it scores at least `margin` plus its class's margin above the mask. Without the weights file
nothing changes. Everything works on a window around the cell (numpy/OpenCV, no scikit-learn at run time).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from naturalize.classes import WBC_CLASSES
from naturalize.segment.border import BorderMaps, border_features, columns
from naturalize.segment.cells import fill_holes, solidity
from naturalize.segment.colour import disk
from naturalize.segment.outline import OutlineModel

WEIGHTS = Path(__file__).with_name("wbc_refine.json")
CANDIDATES: tuple[str, ...] = (
    "mask",
    "dilate",
    "dilate2",
    "erode",
    "grow_loose",
    "grow_tight",
    "grow_pale",
    "round_body",
    "dark_body",
)
CELL_FEATURES: tuple[str, ...] = (
    "area",
    "solidity",
    "nucleus_share",
    "nucleus_dark",
    "colour",
    "contact",
    "body_share",
)
CAND_FEATURES: tuple[str, ...] = (
    "log_area_ratio",
    "log_box_ratio",
    "box_fill",
    "cand_solidity",
    "cand_contact",
    "added_colour",
    "added_dist",
    "removed_colour",
    "removed_green",
)
#: the groups of segment/border.py's image evidence at each candidate's border that the model reads
BORDER_GROUPS: tuple[str, ...] = ("edge", "rel", "side")
FEATURES: tuple[str, ...] = (
    tuple(f"is_{c}" for c in CANDIDATES[1:])
    + CELL_FEATURES
    + CAND_FEATURES
    + tuple(f"class_{c}" for c in WBC_CLASSES)
    + columns(BORDER_GROUPS)
)


@dataclass(frozen=True)
class RefineInput:
    """The classical backend's maps at its work size: cell mask, nuclear lobes, white-cell colour score,
    colour distance to the plate, green relative to the plate, the red cells' colour score, the scale
    (short side / REF_SIZE) and the image's class ("" when unknown)."""

    fg: np.ndarray
    nuclei: np.ndarray
    wbcness: np.ndarray
    colour_dist: np.ndarray
    green: np.ndarray
    red_level: float
    scale: float
    label: str = ""


@dataclass(frozen=True)
class Refiner:
    """The learned model, the classes it is used for, and per class the margin added to the caller's (0 when
    absent)."""

    model: OutlineModel
    classes: tuple[str, ...]
    margins: tuple[tuple[str, float], ...] = ()

    def margin(self, label: str) -> float:
        """The margin added for class `label`."""
        return dict(self.margins).get(label, 0.0)

    def to_json(self) -> str:
        d = json.loads(self.model.to_json())
        extra = {"refine_margins": dict(self.margins)} if self.margins else {}
        return json.dumps({**d, "refine_classes": list(self.classes), **extra}) + "\n"

    @staticmethod
    def from_json(text: str) -> Refiner:
        """The refiner of `to_json`'s text; ValueError when its features differ from FEATURES, a class is unknown
        or a margin is not a number in [0, 1]."""
        d = json.loads(text)
        classes = tuple(d.get("refine_classes", ()))
        margins = d.get("refine_margins", {})
        if not set(classes) <= set(WBC_CLASSES) or not set(margins) <= set(classes):
            raise ValueError(
                f"refine_classes {list(classes)} are not all white-cell classes {list(WBC_CLASSES)}, or "
                f"refine_margins {sorted(margins)} name a class not refined"
            )
        if not all(isinstance(m, (int, float)) and 0.0 <= m <= 1.0 for m in margins.values()):
            raise ValueError(f"refine_margins {margins} must be numbers in [0, 1]")
        pairs = tuple((c, float(m)) for c, m in margins.items())
        return Refiner(OutlineModel.from_json(text, FEATURES), classes, pairs)


@lru_cache(maxsize=1)
def shipped_model() -> Refiner | None:
    """The refinement model shipped with the package, or None when its weights file is absent."""
    return Refiner.from_json(WEIGHTS.read_text()) if WEIGHTS.exists() else None


def _box_area(m: np.ndarray) -> float:
    """Area of the mask's tight box (1 for an empty mask)."""
    _, _, w, h = cv2.boundingRect(m.astype(np.uint8))
    return float(max(1, w * h))


def _keep_touching(m: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Components of `m` that touch `seed`, holes filled (their outer contours drawn filled)."""
    n, lab = cv2.connectedComponents(m.astype(np.uint8), connectivity=8)
    lut = np.zeros(n, np.uint8)
    lut[lab[seed & m]] = 1
    lut[0] = 0
    touching = lut[lab]
    cnts, _ = cv2.findContours(touching, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return cv2.drawContours(touching, cnts, -1, 1, cv2.FILLED).astype(bool)


def candidates(cell: np.ndarray, free: np.ndarray, x: RefineInput, sl: tuple[slice, slice]) -> list[np.ndarray]:
    """The candidate masks (order of CANDIDATES) of one cell; `cell` and `free` (foreground not held by
    another white cell) are bool crops of window `sl`."""
    s = x.scale
    wn, nuc, cd = x.wbcness[sl], x.nuclei[sl] & cell, x.colour_dist[sl]
    u8 = cell.astype(np.uint8)
    dil = [cv2.dilate(u8, disk(r)).astype(bool) & free for r in (1, 2)]
    ero = cv2.erode(u8, disk(1)).astype(bool)
    reach = cv2.dilate(u8, disk(max(1, round(14 * s)))).astype(bool) & ~(x.fg[sl] & ~free)
    grown = []
    for margin, paleness in ((3.0, 1.0), (10.0, 1.0), (6.0, 0.5)):
        g = cell | (reach & (wn > x.red_level + margin) & (cd > paleness * 18.0))
        g = cv2.morphologyEx(g.astype(np.uint8), cv2.MORPH_OPEN, disk(max(1, round(3 * s)))).astype(bool)
        grown.append(_keep_touching(g | cell, cell))
    # the round body: opened with a disk nearly as wide as the cell, small bumps (platelets, granules) cut off
    # (an opening by distance transforms: erode to the pixels deeper than r, grow those back by r)
    inner = cv2.distanceTransform(np.pad(u8, 1), cv2.DIST_L2, 5)
    r = 0.85 * float(inner.max())
    core = (inner > r).astype(np.uint8)
    opened = (cv2.distanceTransform(1 - core, cv2.DIST_L2, 5) <= r)[1:-1, 1:-1] & cell
    opened_m = _keep_touching(opened, nuc) if (opened & nuc).any() else cell
    # the dark body: very dark stain (basophil granules over nucleus and cytoplasm), closed and filled
    dark = (x.green[sl] < 0.45) & cell
    dark = cv2.morphologyEx(dark.astype(np.uint8), cv2.MORPH_CLOSE, disk(max(1, round(3 * s))))
    n, lab, stats, _ = cv2.connectedComponentsWithStats(dark, connectivity=8)
    if n > 1:
        big = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        body = cv2.dilate(fill_holes(lab == big).astype(np.uint8), disk(1)).astype(bool) & cell
    else:
        body = cell
    return [cell, dil[0] | cell, dil[1] | cell, ero if ero.any() else cell, *grown, opened_m, body]


def border_maps(x: RefineInput, sl: tuple[slice, slice]) -> BorderMaps:
    """The maps segment/border.py reads, cropped to window `sl`."""
    return BorderMaps(x.green[sl], x.wbcness[sl], x.colour_dist[sl], x.fg[sl], x.red_level)


def features(cands: list[np.ndarray], x: RefineInput, sl: tuple[slice, slice]) -> np.ndarray:
    """(len(CANDIDATES), len(FEATURES)) features of one cell's candidates (crops of window `sl`)."""
    s2 = x.scale * x.scale
    cell = cands[0]
    fg, wn, cd, gr = x.fg[sl], x.wbcness[sl], x.colour_dist[sl], x.green[sl]
    nuc = x.nuclei[sl] & cell
    area = max(1.0, float(cell.sum()))
    one = np.ones((3, 3), np.uint8)

    def contact(m: np.ndarray) -> float:
        ring = cv2.dilate(m.astype(np.uint8), one).astype(bool) & ~m
        return float(fg[ring].mean()) if ring.any() else 0.0

    def mean(a: np.ndarray, m: np.ndarray) -> float:
        return float(a[m].mean()) if m.any() else 0.0

    n_nuc = int(nuc.sum())
    base_box = _box_area(cell)
    cell_row = [
        area / s2 / 1000.0,
        solidity(cell),
        n_nuc / area,
        float(np.percentile(gr[nuc], 25)) if n_nuc else 1.0,
        mean(wn, cell) - x.red_level,
        contact(cell),
        float(cands[CANDIDATES.index("dark_body")].sum()) / area,
    ]
    class_row = [float(x.label == c) for c in WBC_CLASSES]
    rows = []
    for k, c in enumerate(cands):
        added, removed = c & ~cell, cell & ~c
        onehot = [float(k == j) for j in range(1, len(CANDIDATES))]
        c_area, c_box = max(1.0, float(c.sum())), _box_area(c)
        cand_row = [
            float(np.log(c_area / area)),
            float(np.log(c_box / base_box)),
            c_area / c_box,
            solidity(c),
            contact(c),
            mean(wn, added) - x.red_level if added.any() else 0.0,
            mean(cd, added) / 18.0,
            mean(wn, removed) - x.red_level if removed.any() else 0.0,
            mean(gr, removed),
        ]
        rows.append(onehot + cell_row + cand_row + class_row)
    out = np.array(rows, np.float64)
    return np.hstack([out, border_features(cands, border_maps(x, sl), BORDER_GROUPS)]) if BORDER_GROUPS else out


def windows(labels: np.ndarray, n: int, x: RefineInput) -> list[tuple[int, tuple[slice, slice]]]:
    """(label, window around it wide enough for every candidate) of each white cell 1..n."""
    from scipy import ndimage as ndi

    h, w = labels.shape
    m = max(2, round(14 * x.scale))
    out = []
    for i, box in enumerate(ndi.find_objects(labels, max_label=n), start=1):
        if box is None:
            continue
        ys, xs = box
        out.append(
            (i, (slice(max(0, ys.start - m), min(h, ys.stop + m)), slice(max(0, xs.start - m), min(w, xs.stop + m))))
        )
    return out


def cell_candidates(
    labels: np.ndarray, n: int, x: RefineInput
) -> list[tuple[int, tuple[slice, slice], list[np.ndarray], np.ndarray]]:
    """(label, window, candidate crops, their features) of each white cell 1..n of `labels`."""
    out = []
    for i, sl in windows(labels, n, x):
        lab = labels[sl]
        cell = lab == i
        free = x.fg[sl] & ((lab == 0) | cell)
        cands = candidates(cell, free, x, sl)
        out.append((i, sl, cands, features(cands, x, sl)))
    return out


def choose(probs: np.ndarray, margin: float) -> int:
    """Index of the chosen candidate: the best-scoring one if it beats the mask itself (index 0) by `margin`."""
    best = int(np.argmax(probs))
    return best if probs[best] >= probs[0] + margin else 0


def refine_white(
    labels: np.ndarray, n: int, x: RefineInput, refiner: Refiner | None, margin: float, trace: list | None = None
) -> np.ndarray:
    """`labels` (white cells 1..n) with each cell replaced by its chosen candidate (at `margin` plus the
    refiner's margin for the class); unchanged without a refiner or for a class it is not used for. `trace`,
    when given, receives (label, window, candidates, features, `x`) of every cell (training)."""
    model = refiner.model if refiner is not None and x.label in refiner.classes else None
    if refiner is not None:
        margin += refiner.margin(x.label)
    if model is None and trace is None:
        return labels
    out = labels.copy()
    for i, sl, cands, feats in cell_candidates(labels, n, x):
        if trace is not None:
            trace.append((i, sl, cands, feats, x))
        if model is None:
            continue
        k = choose(model.prob(feats), margin)
        if k:
            sub = out[sl]
            sub[sub == i] = 0
            sub[cands[k] & ((sub == 0) | (sub == i))] = i
    return out
