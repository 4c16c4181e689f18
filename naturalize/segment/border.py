"""Image evidence at the border of a white cell's candidate masks (features of the learned refinement).

In: one cell's candidate masks (order of refine.CANDIDATES, the mask itself first; bool crops of one window)
and that window's maps (`BorderMaps`: green relative to the plate, white-cell colour score, colour distance to
the plate, foreground, the red cells' colour level). Out: (len(candidates), len(columns)) features per
candidate, in groups (`GROUPS`). Gradients are Scharr magnitudes of the green map ("g") and of the white-cell
colour score ("w"), computed once per window; the candidates are stacked as the channels of one image, so each
erosion, dilation and masked mean is one OpenCV call or one matrix product for all of them.

- `edge`: mean gradient on the candidate's 1-px inner contour.
- `rel`: the log of `edge` over the mask's own.
- `ridge`: `edge` minus the larger of the rings 1 px outside and 1 px inside.
- `peak`: share of contour pixels at least as strong as every outside neighbour.
- `between`: gradient on the pixels between the candidate's and the mask's outlines, minus the mask contour's.
- `step`: 2-px ring inside against 2-px ring outside (green out - in; white-cell colour and plate distance in - out).
- `side`: at the four sides of the candidate's box (what box IoU reads), the green gradient on the candidate's
  pixels within 1 px of each side (min and mean over sides), and the white-cell colour above the red cells' level
  and the foreground share 1-3 px beyond each side (max, max, mean over sides).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

ONE = np.ones((3, 3), np.uint8)
EPS = 1e-3


@dataclass(frozen=True)
class BorderMaps:
    """One window's maps at the work size (2-D, same shape as the candidates)."""

    green: np.ndarray
    wbcness: np.ndarray
    colour_dist: np.ndarray
    fg: np.ndarray
    red_level: float


def gradient(a: np.ndarray) -> np.ndarray:
    """Scharr gradient magnitude of a 2-D map (float32, scaled to a unit step)."""
    a = np.asarray(a, np.float32)
    gx, gy = cv2.Scharr(a, cv2.CV_32F, 1, 0), cv2.Scharr(a, cv2.CV_32F, 0, 1)
    return np.sqrt(gx * gx + gy * gy) / 16.0


def _morph(op: int, stack: np.ndarray, r: int) -> np.ndarray:
    """Erosion or dilation of every channel of an (h, w, K) uint8 stack by a 3x3 square, `r` times."""
    out = cv2.morphologyEx(stack, op, ONE, iterations=r)
    return out.reshape(stack.shape)  # OpenCV drops a last axis of length 1


class _Window:
    """The stacked candidates of one cell and everything the groups share (each computed at most once)."""

    def __init__(self, cands: list[np.ndarray], m: BorderMaps) -> None:
        self.cands = [c.astype(np.uint8) for c in cands]
        self.c = np.stack(self.cands, -1)
        self.m = m

    @cached_property
    def g(self) -> np.ndarray:
        return gradient(self.m.green)

    @cached_property
    def w(self) -> np.ndarray:
        return gradient(self.m.wbcness)

    @cached_property
    def er1(self) -> np.ndarray:
        return _morph(cv2.MORPH_ERODE, self.c, 1)

    @cached_property
    def er2(self) -> np.ndarray:
        return _morph(cv2.MORPH_ERODE, self.c, 2)

    @cached_property
    def di1(self) -> np.ndarray:
        return _morph(cv2.MORPH_DILATE, self.c, 1)

    @cached_property
    def contour(self) -> np.ndarray:
        return self.c > self.er1

    @cached_property
    def outer(self) -> np.ndarray:
        return self.di1 > self.c

    @cached_property
    def edge(self) -> np.ndarray:
        """(K, 2) mean green and white-cell colour gradient on each candidate's contour."""
        return means(self.contour, np.stack([self.g, self.w], -1))


def means(masks: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """(K, M) mean of each of the (h, w, M) `maps` over each of the (h, w, K) bool `masks` (0 where a mask is empty):
    one matrix product, the pixel counts from a column of ones."""
    mk = masks.reshape(-1, masks.shape[-1]).astype(np.float32)
    flat = maps.reshape(len(mk), -1).astype(np.float32)
    sums = mk.T @ np.hstack([flat, np.ones((len(mk), 1), np.float32)])
    n = sums[:, -1:]
    return (sums[:, :-1] / np.maximum(n, 1)).astype(np.float64)


def counts(masks: np.ndarray) -> np.ndarray:
    """(K,) pixel count of each of the (h, w, K) bool `masks` (a matrix product: faster than a strided sum)."""
    mk = masks.reshape(-1, masks.shape[-1]).astype(np.float32)
    return np.ones(len(mk), np.float32) @ mk


def _edge(v: _Window) -> np.ndarray:
    return v.edge


def _rel(v: _Window) -> np.ndarray:
    return np.log((v.edge + EPS) / (v.edge[:1] + EPS))


def _ridge(v: _Window) -> np.ndarray:
    gw = np.stack([v.g, v.w], -1)
    inner = v.er1 > v.er2
    return v.edge - np.maximum(means(v.outer, gw), means(inner, gw))


def _peak(v: _Window) -> np.ndarray:
    out = []
    n = np.maximum(counts(v.contour), 1)
    for g in (v.g, v.w):
        beyond = _morph(cv2.MORPH_DILATE, np.where(v.outer, g[..., None], np.float32(0)), 1)
        out.append(counts((g[..., None] >= beyond) & v.contour) / n)
    return np.stack(out, -1).astype(np.float64)


def _between(v: _Window) -> np.ndarray:
    diff = v.c.astype(bool) ^ v.c[..., :1].astype(bool)
    return means(diff, np.stack([v.g, v.w], -1)) - v.edge[:1]


def _step(v: _Window) -> np.ndarray:
    ring_in = v.c > v.er2
    ring_out = _morph(cv2.MORPH_DILATE, v.c, 2) > v.c
    maps = np.stack([v.m.green, v.m.wbcness, v.m.colour_dist], -1)
    d = means(ring_in, maps) - means(ring_out, maps)
    return d * np.array([-1.0, 1.0, 1.0])


def _side_strips(
    c: np.ndarray, g: np.ndarray, beyond: np.ndarray, side: np.ndarray, low: bool
) -> tuple[np.ndarray, np.ndarray]:
    """For each candidate (channels of c, (h, w, K)) whose box's left (`low`) or right side is column `side` (K,):
    the mean of `g` over its pixels in that column and the next one inwards, (K,), and the mean of each `beyond`
    map ((h, w, B)) 1-3 px further out from those pixels, (K, B)."""
    h, w, k = c.shape
    cols = np.clip(side[:, None] + (np.array([0, 1]) if low else np.array([-1, 0])), 0, w - 1)  # (K, 2)
    on = c[:, cols, np.arange(k)[:, None]].reshape(h, -1).astype(np.float32)  # (h, K*2)
    shift = np.array([1, 2, 3]) * (-1 if low else 1)
    idx = np.clip(cols[:, :, None] + shift, 0, w - 1).reshape(-1)  # (K*2*3,)
    n = np.maximum(on.sum(0).reshape(k, 2).sum(1), 1)
    g_mean = np.einsum("hj,hj->j", g[:, cols.reshape(-1)], on).reshape(k, 2).sum(1) / n
    far = np.einsum("hjsb,hj->jb", beyond[:, idx].reshape(h, k * 2, 3, -1), on)  # (K*2, B)
    return g_mean, far.reshape(k, 2, -1).sum(1) / (3 * n[:, None])


def _side(v: _Window) -> np.ndarray:
    beyond = np.stack([v.m.wbcness - v.m.red_level, v.m.fg], -1).astype(np.float32)
    box = np.array([cv2.boundingRect(c) for c in v.cands])  # (K, 4): x, y, width, height
    first, last = box[:, :2], box[:, :2] + box[:, 2:] - 1
    upright = (v.c, v.g, beyond)
    turned = (v.c.transpose(1, 0, 2), v.g.T, beyond.transpose(1, 0, 2))  # rows as columns: the top and bottom sides
    sides = [
        _side_strips(c, g, b, ends[:, axis], low)
        for axis, (c, g, b) in enumerate((upright, turned))
        for ends, low in ((first, True), (last, False))
    ]
    edges = np.stack([s[0] for s in sides], -1)  # (K, 4)
    far = np.stack([s[1] for s in sides], -1)  # (K, 2, 4)
    wbc, fg = far[:, 0], far[:, 1]
    return np.stack([edges.min(1), edges.mean(1), wbc.max(1), fg.max(1), wbc.mean(1)], -1)


Group = Callable[[_Window], np.ndarray]
#: group name -> (its columns, the function giving them for every candidate of a window)
GROUPS: dict[str, tuple[tuple[str, ...], Group]] = {
    "edge": (("edge_g", "edge_w"), _edge),
    "rel": (("edge_rel_g", "edge_rel_w"), _rel),
    "ridge": (("ridge_g", "ridge_w"), _ridge),
    "peak": (("peak_g", "peak_w"), _peak),
    "between": (("between_g", "between_w"), _between),
    "step": (("step_green", "step_wbc", "step_cd"), _step),
    "side": (("side_edge_min", "side_edge_mean", "side_wbc_max", "side_fg_max", "side_wbc_mean"), _side),
}


def columns(groups: tuple[str, ...]) -> tuple[str, ...]:
    """The column names of the named groups, in order; ValueError naming an unknown group."""
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise ValueError(f"unknown border groups {unknown}: choose from {', '.join(GROUPS)}")
    return tuple(n for g in groups for n in GROUPS[g][0])


#: every group's columns, in GROUPS order
COLUMNS: tuple[str, ...] = columns(tuple(GROUPS))


def border_features(cands: list[np.ndarray], maps: BorderMaps, groups: tuple[str, ...] = tuple(GROUPS)) -> np.ndarray:
    """(len(cands), len(columns(groups))) border features of one cell's candidates (bool crops of `maps`' window)."""
    columns(groups)  # ValueError for an unknown group before any work
    v = _Window(cands, maps)
    return np.hstack([GROUPS[g][1](v) for g in groups]) if groups else np.zeros((len(cands), 0))
