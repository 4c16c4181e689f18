"""Learned check of red-cell outlines: how likely a red-cell mask is one whole cell, outlined right.

In: the RGB image, its `Segmentation` (any backend). Out: per RBC cell a probability (0..1) that its box
matches the cell's true box at IoU >= 0.7. The model is a tiny multilayer perceptron (one hidden layer
of 16 ReLU units, ~200 weights) on ten shape, contact and colour features of the mask (`FEATURES`),
trained by `benchmarks/train_rbc_outline.py` (scikit-learn) on the tuning half of the annotated sample
(classical masks against OI-PBC boxes); its weights are the small JSON file beside this module. Pure
numpy/OpenCV at run time; without the weights file every probability is 1.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from naturalize.segment.cells import Cell, Segmentation
from naturalize.segment.colour import plate_colour

WEIGHTS = Path(__file__).with_name("rbc_outline.json")
FEATURES: tuple[str, ...] = (
    "solidity",
    "aspect",
    "ellipse_iou",
    "contact",
    "wbc_contact",
    "log_rel_area",
    "area",
    "ring_colour",
    "inner_colour",
    "stain",
)


@dataclass(frozen=True)
class OutlineModel:
    """Standardised one-hidden-layer perceptron: p = sigmoid(relu(z @ w1 + b1) @ w2 + b2), z = (x - mean) / scale."""

    mean: np.ndarray  # (F,)
    scale: np.ndarray  # (F,)
    w1: np.ndarray  # (F, H)
    b1: np.ndarray  # (H,)
    w2: np.ndarray  # (H,)
    b2: float
    features: tuple[str, ...] = FEATURES  # the feature names, in column order (checked on loading)

    def prob(self, x: np.ndarray) -> np.ndarray:
        """(N, len(FEATURES)) features -> (N,) probabilities."""
        z = (np.asarray(x, np.float64) - self.mean) / self.scale
        out = np.maximum(z @ self.w1 + self.b1, 0.0) @ self.w2 + self.b2
        return 1.0 / (1.0 + np.exp(-out))

    def to_json(self) -> str:
        r = {
            k: np.round(np.asarray(getattr(self, k), np.float64), 6).tolist()
            for k in ("mean", "scale", "w1", "b1", "w2")
        }
        return json.dumps({"features": list(self.features), **r, "b2": round(float(self.b2), 6)}) + "\n"

    @staticmethod
    def from_json(text: str, features: tuple[str, ...] = FEATURES) -> OutlineModel:
        """The model of `to_json`'s text; ValueError when its feature names differ from `features` or its shapes
        do not fit (the same class serves other tiny models, e.g. segment/refine.py, with their own names)."""
        d = json.loads(text)
        if tuple(d["features"]) != features:
            raise ValueError(f"model features {d['features']} differ from {list(features)}")
        a = {k: np.array(d[k], np.float64) for k in ("mean", "scale", "w1", "b1", "w2")}
        if a["w1"].shape != (len(features), a["b1"].size) or a["w2"].shape != a["b1"].shape:
            raise ValueError("model weights have inconsistent shapes")
        return OutlineModel(a["mean"], a["scale"], a["w1"], a["b1"], a["w2"], float(d["b2"]), features)


def weights_id(path: Path) -> str | None:
    """Short hash of a shipped weights file (a bank records it, so a bank made with other weights is not
    resumed), or None when the file is absent."""
    return hashlib.sha1(path.read_bytes()).hexdigest()[:12] if path.exists() else None


@lru_cache(maxsize=1)
def shipped_model() -> OutlineModel | None:
    """The model shipped with the package, or None when its weights file is absent."""
    return OutlineModel.from_json(WEIGHTS.read_text()) if WEIGHTS.exists() else None


def _ring_stats(m: np.ndarray, others: np.ndarray, wbc: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(contact with other non-white cells, contact with white cells, ring mask) of a bool crop; `others` / `wbc`:
    pixels of other cells / of white cells (the mask's own pixels may be in them: only its outer ring is read)."""
    ring = cv2.dilate(m.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~m
    n = max(1, int(np.count_nonzero(ring)))
    return float(np.count_nonzero(ring & others & ~wbc)) / n, float(np.count_nonzero(ring & wbc)) / n, ring


def _plate_dist(px: np.ndarray, plate: np.ndarray) -> np.ndarray:
    """(N,) colour distance of (N, 3) float32 pixels to the plate colour, in units of 18 (the foreground threshold)."""
    return np.sqrt(((px - plate) ** 2).sum(axis=1)) / 18.0


def rbc_features(
    rgb: np.ndarray, seg: Segmentation, which: list[int] | None = None, plate: np.ndarray | None = None
) -> tuple[list[int], np.ndarray]:
    """(indices into seg.cells of the RBC cells, or of `which`; (N, len(FEATURES)) float features).
    Sizes are relative to the image's usable red cells and scale to 360 px; `plate`: the image's plate
    colour when already known."""
    from naturalize.segment.assign import shape_features

    rbc = [i for i, c in enumerate(seg.cells) if c.kind == "RBC"]
    idx = rbc if which is None else [i for i in which if seg.cells[i].kind == "RBC"]
    if not idx:
        return [], np.zeros((0, len(FEATURES)))
    h, w = rgb.shape[:2]
    s2 = (min(h, w) / 360) ** 2
    plate = plate_colour(rgb) if plate is None else plate
    boxes = [c.box for c in seg.cells]  # each full mask is scanned once; the rest works on crops
    all_areas = {
        i: float(np.count_nonzero(seg.cells[i].mask[b[1] : b[3], b[0] : b[2]])) for i, b in ((i, boxes[i]) for i in rbc)
    }
    usable = [all_areas[i] for i in rbc if seg.cells[i].usable]
    ref = float(np.median(usable if len(usable) >= 3 else list(all_areas.values())))
    # pixels covered by any cell / by a white cell: a red cell's ring (outside its own mask) touches others there
    cover, wbc_cover = np.zeros((h, w), bool), np.zeros((h, w), bool)
    for o, (a0, b0, a1, b1) in zip(seg.cells, boxes):
        cover[b0:b1, a0:a1] |= o.mask[b0:b1, a0:a1]
        if o.kind == "WBC":
            wbc_cover[b0:b1, a0:a1] |= o.mask[b0:b1, a0:a1]
    rows = []
    for i in idx:
        c: Cell = seg.cells[i]
        area = all_areas[i]
        x0, y0, x1, y1 = boxes[i]
        Y0, Y1, X0, X1 = max(0, y0 - 3), min(h, y1 + 3), max(0, x0 - 3), min(w, x1 + 3)
        sl = (slice(Y0, Y1), slice(X0, X1))
        m = c.mask[sl]
        contact, wbc_contact, ring = _ring_stats(m, cover[sl], wbc_cover[sl])
        solidity, aspect, ell = shape_features(m)
        crop = rgb[sl]
        inner = crop[m].astype(np.float32)  # (N, 3): only the mask's and the ring's pixels are read
        rows.append(
            (
                solidity,
                min(aspect, 5.0),
                ell,
                contact,
                wbc_contact,
                float(np.log(max(area, 1.0) / max(ref, 1.0))),
                area / s2 / 1000.0,
                float(_plate_dist(crop[ring].astype(np.float32), plate).mean()) if ring.any() else 0.0,
                float(_plate_dist(inner, plate).mean()),
                float((inner[:, 2] - inner[:, 1]).mean()) / 30.0,
            )
        )
    return idx, np.array(rows, np.float64)


def rbc_outline_prob(
    rgb: np.ndarray,
    seg: Segmentation,
    which: list[int] | None = None,
    model: OutlineModel | None = None,
    plate: np.ndarray | None = None,
) -> dict[int, float]:
    """{index into seg.cells: probability that this RBC's outline is right} for the RBC cells (those of
    `which` when given); 1.0 without a model."""
    model = model or shipped_model()
    idx, x = rbc_features(rgb, seg, which, plate)
    if model is None or not idx:
        return {i: 1.0 for i in idx}
    return dict(zip(idx, (float(p) for p in model.prob(x))))
