"""Image evidence at a white-cell candidate's border (an experiment of train_wbc_refine.py --boundary).

In: one cell's candidate masks (order of refine.CANDIDATES, the mask first; bool crops of window `sl`) and the
classical backend's maps (`RefineInput`). Out: (len(candidates), len(columns)) features per candidate, grouped in
`GROUPS`; the gradients are Scharr magnitudes of the green map ("g", green relative to the plate) and of the
white-cell colour score ("w"), computed once per window. The shipped refinement does not read them: the sixth
round of issue 12 (BENCHMARKS.md) measured them on the tuning half and none raised the held-out figure.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from naturalize.segment.refine import RefineInput

ONE = np.ones((3, 3), np.uint8)
Maps = dict[str, np.ndarray]


def _erode(m: np.ndarray, r: int = 1) -> np.ndarray:
    return cv2.erode(m.astype(np.uint8), ONE, iterations=r).astype(bool)


def _dilate(m: np.ndarray, r: int = 1) -> np.ndarray:
    return cv2.dilate(m.astype(np.uint8), ONE, iterations=r).astype(bool)


def _mean(a: np.ndarray, m: np.ndarray, empty: float = 0.0) -> float:
    return float(a[m].mean()) if m.any() else empty


def gradient(a: np.ndarray) -> np.ndarray:
    """Scharr gradient magnitude of a 2-D map (float32, scaled to a unit step)."""
    a = a.astype(np.float32)
    gx, gy = cv2.Scharr(a, cv2.CV_32F, 1, 0), cv2.Scharr(a, cv2.CV_32F, 0, 1)
    return np.sqrt(gx * gx + gy * gy) / 16.0


def _edge(c: np.ndarray, cell: np.ndarray, m: Maps) -> list[float]:
    """Mean gradient on the candidate's 1-px inner contour (green, wbcness)."""
    cont = c & ~_erode(c)
    return [_mean(m["g"], cont), _mean(m["w"], cont)]


def _rel(c: np.ndarray, cell: np.ndarray, m: Maps) -> list[float]:
    """Log of the contour's mean gradient over the mask's own (green, wbcness)."""
    return [float(np.log((a + 1e-3) / (b + 1e-3))) for a, b in zip(_edge(c, cell, m), m["cell_edge"])]


def _ridge(c: np.ndarray, cell: np.ndarray, m: Maps) -> list[float]:
    """Contour gradient minus the larger of the rings one pixel outside and one pixel inside."""
    cont, outer, inner = c & ~_erode(c), _dilate(c) & ~c, _erode(c) & ~_erode(c, 2)
    return [_mean(g, cont) - max(_mean(g, outer), _mean(g, inner)) for g in (m["g"], m["w"])]


def _peak(c: np.ndarray, cell: np.ndarray, m: Maps) -> list[float]:
    """Share of contour pixels whose gradient is at least that of every outside neighbour."""
    cont, outer = c & ~_erode(c), _dilate(c) & ~c
    out = []
    for g in (m["g"], m["w"]):
        beyond = cv2.dilate(np.where(outer, g, 0).astype(np.float32), ONE)
        out.append(float((g[cont] >= beyond[cont]).mean()) if cont.any() else 0.0)
    return out


def _between(c: np.ndarray, cell: np.ndarray, m: Maps) -> list[float]:
    """Mean gradient on the pixels between the candidate's and the mask's outlines, minus the mask contour's."""
    return [_mean(g, c ^ cell) - float(b) for g, b in zip((m["g"], m["w"]), m["cell_edge"])]


def _step(c: np.ndarray, cell: np.ndarray, m: Maps) -> list[float]:
    """Contrast of a 2-px ring outside against a 2-px ring inside: green (out - in), wbcness and plate
    distance (in - out)."""
    ring_in, ring_out = c & ~_erode(c, 2), _dilate(c, 2) & ~c
    return [
        _mean(m["green"], ring_out) - _mean(m["green"], ring_in),
        _mean(m["wbcness"], ring_in) - _mean(m["wbcness"], ring_out),
        _mean(m["colour_dist"], ring_in) - _mean(m["colour_dist"], ring_out),
    ]


def _side(c: np.ndarray, cell: np.ndarray, m: Maps) -> list[float]:
    """Evidence at the four sides of the candidate's box (what box IoU reads): the green gradient on the
    contour pixels within 1 px of each side (min and mean over sides), and the white-cell colour (above the
    red cells' level) and foreground share 1-3 px beyond each side (max, max, mean over sides)."""
    ys, xs = np.nonzero(c)
    if not len(ys):
        return [0.0] * 5
    h, w = c.shape
    edges, wbc, fg = [], [], []
    for axis, lo in ((1, True), (1, False), (0, True), (0, False)):
        pos = xs if axis == 1 else ys
        on = np.abs(pos - (pos.min() if lo else pos.max())) <= 1
        py, px = ys[on], xs[on]
        edges.append(float(m["g"][py, px].mean()))
        t = np.repeat(np.array([1, 2, 3]) * (-1 if lo else 1), len(py))
        by, bx = np.tile(py, 3), np.tile(px, 3)
        by, bx = (by, np.clip(bx + t, 0, w - 1)) if axis == 1 else (np.clip(by + t, 0, h - 1), bx)
        wbc.append(float(m["wbc_above_red"][by, bx].mean()))
        fg.append(float(m["fg"][by, bx].mean()))
    return [min(edges), float(np.mean(edges)), max(wbc), max(fg), float(np.mean(wbc))]


Column = Callable[[np.ndarray, np.ndarray, Maps], list[float]]
#: group name -> (its columns, the function giving them for one candidate)
GROUPS: dict[str, tuple[tuple[str, ...], Column]] = {
    "edge": (("edge_g", "edge_w"), _edge),
    "rel": (("edge_rel_g", "edge_rel_w"), _rel),
    "ridge": (("ridge_g", "ridge_w"), _ridge),
    "peak": (("peak_g", "peak_w"), _peak),
    "between": (("between_g", "between_w"), _between),
    "step": (("step_green", "step_wbc", "step_cd"), _step),
    "side": (("side_edge_min", "side_edge_mean", "side_wbc_max", "side_fg_max", "side_wbc_mean"), _side),
}
COLUMNS: tuple[str, ...] = tuple(n for names, _ in GROUPS.values() for n in names)


def boundary_features(cands: list[np.ndarray], x: RefineInput, sl: tuple[slice, slice]) -> np.ndarray:
    """(len(cands), len(COLUMNS)) boundary features of one cell's candidates (crops of window `sl`)."""
    wn = x.wbcness[sl]
    maps = {
        "g": gradient(x.green[sl]),
        "w": gradient(wn),
        "green": x.green[sl],
        "wbcness": wn,
        "colour_dist": x.colour_dist[sl],
        "wbc_above_red": wn - x.red_level,
        "fg": x.fg[sl].astype(np.float32),
    }
    cell = cands[0]
    maps["cell_edge"] = np.array(_edge(cell, cell, maps))  # the mask's own contour gradient, once per cell
    return np.array([[v for _, f in GROUPS.values() for v in f(c, cell, maps)] for c in cands], np.float64)


def columns_of(groups: tuple[str, ...]) -> list[int]:
    """Indices into COLUMNS of the named groups' columns; ValueError naming an unknown group."""
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise ValueError(f"unknown boundary groups {unknown}: choose from {', '.join(GROUPS)}")
    return [COLUMNS.index(n) for g in groups for n in GROUPS[g][0]]
