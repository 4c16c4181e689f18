"""The stain colour model shared by every backend: plate colour, cell/stain maps, white-cell colour.

In: an RGB uint8 image (HxWx3). Out: float32 maps of the same size. Pure numpy/OpenCV, no backend
knowledge: the classical pipeline, `assign` (kinds for any masks) and the quality gate read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

#: The short side (px) of a PBC crop, for which every pixel size and count in segment/ is tuned; they scale
#: with min(image side) / REF_SIZE.
REF_SIZE = 360


@dataclass(frozen=True)
class StainParams:
    """Colour thresholds of the stain model; pixel sizes are for ~360 px PBC crops and scale with the image."""

    fg_delta: float = 18.0  # min colour distance from the plate colour to count as cell
    purple_delta: float = 45.0  # min blue-minus-green of nucleus / platelet stain
    ref_size: int = REF_SIZE  # the short side the pixel sizes are tuned for


class HasStain(Protocol):
    """Anything carrying the StainParams fields (StainParams itself, the classical backend's params)."""

    @property
    def fg_delta(self) -> float: ...
    @property
    def ref_size(self) -> int: ...


def disk(r: int) -> np.ndarray:
    """Elliptic structuring element of radius r."""
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def plate_colour(rgb: np.ndarray) -> np.ndarray:
    """Median colour of the greenest 30% of pixels: the empty plate (float32 RGB)."""
    sub = rgb[::2, ::2]
    g = sub[:, :, 1]
    thr = np.percentile(g, 70)
    green = sub[g >= thr]
    return np.array([median_u8(green[:, i]) for i in range(3)], np.float32)


def median_u8(a: np.ndarray) -> float:
    """numpy.median of a non-empty 1-D uint8 array (the middle value, or the mean of the two middle values),
    from its 256-bin histogram instead of a partition."""
    n = a.size
    cum = np.cumsum(np.bincount(a, minlength=256))
    hi = int(np.searchsorted(cum, n // 2, side="right"))  # the value of rank n // 2 (0-based)
    if n % 2:
        return float(hi)
    lo = int(np.searchsorted(cum, n // 2 - 1, side="right"))
    return (lo + hi) / 2.0


def fill_small_holes(mask: np.ndarray, max_area: int) -> np.ndarray:
    """Fill holes (plate enclosed by cell) smaller than max_area: the red cells' pale centres."""
    n, lab, stats, _ = cv2.connectedComponentsWithStats((~mask).astype(np.uint8), connectivity=4)
    h, w = mask.shape
    x, y, bw, bh, area = stats.T
    inner = (area < max_area) & (x > 0) & (y > 0) & (x + bw < w) & (y + bh < h)
    inner[0] = False
    return mask | inner[lab]


def colour_maps(rgb: np.ndarray, p: HasStain = StainParams()) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(cell mask with pale centres filled, blue-minus-green stain, distance to the plate colour, plate colour)."""
    s = min(rgb.shape[:2]) / p.ref_size
    f = cv2.GaussianBlur(rgb.astype(np.float32), (0, 0), max(0.5, 1.0 * s))
    plate = plate_colour(rgb)
    dist_col = np.sqrt(((f - plate) ** 2).sum(axis=2))
    fg = cv2.morphologyEx((dist_col > p.fg_delta).astype(np.uint8), cv2.MORPH_OPEN, disk(1)).astype(bool)
    fg = fill_small_holes(fg, int(1500 * s * s))
    return fg, f[:, :, 2] - f[:, :, 1], dist_col, plate


def white_cell_colour(rgb: np.ndarray, fg: np.ndarray, plate: np.ndarray | None = None) -> np.ndarray:
    """Per-pixel white-cell colour score, 100 * (1 - OD_blue / OD_green) with OD the optical density
    against the plate: it depends on the stain's hue, not on how pale the cell is. Red cells score
    ~40, white-cell cytoplasm ~55-75, nuclei ~80; plate pixels get the red cells' level (neutral)."""
    s = min(rgb.shape[:2]) / REF_SIZE
    f = cv2.GaussianBlur(rgb.astype(np.float32), (0, 0), max(0.7, 2.0 * s))
    plate = plate_colour(rgb) if plate is None else plate
    od = np.maximum(-np.log((f[:, :, 1:] + 1.0) / (plate[1:] + 1.0)), 0.0)  # green and blue (red is not read)
    score = 100.0 * (1.0 - od[:, :, 1] / (od[:, :, 0] + 0.03))
    return np.where(fg, score, 40.0).astype(np.float32)
