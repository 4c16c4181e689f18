"""Weight-free segmentation of one PBC image (OpenCV + scikit-image).

In: an image array (gray, RGB or RGBA). Out: a `Segmentation` (cells with kinds RBC/WBC/PLT, the
cell-free background plate, curation flags).

Steps: (1) estimate the plate colour and mark every pixel that differs from it (foreground, the red
cells' pale centres filled); (2) the stain axis blue-minus-green separates purple nuclei and
platelets from red cells; (3) nuclear lobes close together are grouped into white cells;
(4) a marker watershed on the distance map splits the foreground between the white cells and the
red cells (one marker per distance peak); small purple blobs outside white cells are platelets;
(5) `assign.judge_cells` scores each region and decides whether it is usable for compositing.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from naturalize.segment.cells import Segmentation, as_rgb, finish


@dataclass(frozen=True)
class ClassicalParams:
    """Thresholds of the classical backend; pixel sizes are for ~360 px PBC crops and scale with the image."""

    fg_delta: float = 18.0          # min colour distance from the plate colour to count as cell
    purple_delta: float = 45.0      # min blue-minus-green of nucleus / platelet stain
    nucleus_min_area: int = 150     # purple blobs at least this big may be nuclear lobes
    nucleus_group_px: int = 14      # nuclear lobes closer than this belong to one white cell
    wbc_min_area: int = 1200        # a white cell's grouped nuclear area is at least this
    plt_min_area: int = 10          # platelets: purple blobs between these areas
    plt_max_area: int = 1200
    rbc_min_radius: float = 9.0     # distance-map peaks lower than this are no red-cell centre
    rbc_peak_px: int = 9            # red-cell markers: local distance maxima within this radius
    rim_px: int = 2                 # grow red-cell masks into the plate by this much (their pale rim)
    ref_size: int = 360


def _disk(r: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def plate_colour(rgb: np.ndarray) -> np.ndarray:
    """Median colour of the greenest 30% of pixels: the empty plate (float32 RGB)."""
    g = rgb[:, :, 1]
    thr = np.percentile(g, 70)
    return np.median(rgb[g >= thr].reshape(-1, 3), axis=0).astype(np.float32)


def _fill_small_holes(mask: np.ndarray, max_area: int) -> np.ndarray:
    """Fill holes (plate enclosed by cell) smaller than max_area: the red cells' pale centres."""
    n, lab, stats, _ = cv2.connectedComponentsWithStats((~mask).astype(np.uint8), connectivity=4)
    h, w = mask.shape
    x, y, bw, bh, area = stats.T
    inner = (area < max_area) & (x > 0) & (y > 0) & (x + bw < w) & (y + bh < h)
    inner[0] = False
    return mask | inner[lab]


def foreground_and_stain(rgb: np.ndarray, p: ClassicalParams) -> tuple[np.ndarray, np.ndarray]:
    """(cell mask with pale centres filled, blue-minus-green stain map), both HxW."""
    s = min(rgb.shape[:2]) / p.ref_size
    f = cv2.GaussianBlur(rgb.astype(np.float32), (0, 0), 1.0)
    plate = plate_colour(rgb)
    dist_col = np.sqrt(((f - plate) ** 2).sum(axis=2))
    fg = cv2.morphologyEx((dist_col > p.fg_delta).astype(np.uint8), cv2.MORPH_OPEN, _disk(1)).astype(bool)
    fg = _fill_small_holes(fg, int(1500 * s * s))
    return fg, f[:, :, 2] - f[:, :, 1]


def _components(mask: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return n, lab, stats[:, cv2.CC_STAT_AREA]


def find_nuclei(fg: np.ndarray, stain: np.ndarray, p: ClassicalParams) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(white-cell seeds: grouped nuclear lobes, platelet masks) from the purple stain."""
    s = min(fg.shape) / p.ref_size
    a = s * s
    purple = cv2.morphologyEx(((stain > p.purple_delta) & fg).astype(np.uint8), cv2.MORPH_OPEN, _disk(1))
    n, lab, areas = _components(purple)
    lobes = np.isin(lab, np.flatnonzero(areas >= p.nucleus_min_area * a)) & (lab > 0)
    grouped = cv2.morphologyEx(lobes.astype(np.uint8), cv2.MORPH_CLOSE, _disk(max(1, round(p.nucleus_group_px * s))))
    gn, glab, _ = _components(grouped | lobes)
    seeds, in_wbc = [], np.zeros(fg.shape, bool)
    for i in range(1, gn):
        seed = (glab == i) & (purple > 0)
        if seed.sum() >= p.wbc_min_area * a:
            seeds.append(seed)
            in_wbc |= glab == i
    plts = []
    for i in range(1, n):
        if p.plt_min_area * a <= areas[i] <= p.plt_max_area * a:
            m = lab == i
            if not (m & in_wbc).any():
                plts.append(m)
    return seeds, plts


def split_regions(fg: np.ndarray, seeds: list[np.ndarray], p: ClassicalParams) -> tuple[np.ndarray, int]:
    """Marker watershed of the foreground on its distance map: labels 1..len(seeds) are white cells,
    higher labels red-cell candidates, 0 the plate. Returns (labels, number of labels)."""
    from skimage.segmentation import watershed

    s = min(fg.shape) / p.ref_size
    fg8 = fg.astype(np.uint8)
    dist = cv2.distanceTransform(fg8, cv2.DIST_L2, 5)
    markers = np.zeros(fg.shape, np.int32)
    near_wbc = np.zeros(fg.shape, bool)
    for i, seed in enumerate(seeds, start=1):
        markers[seed] = i
        near_wbc |= seed
    if seeds:
        near_wbc = cv2.dilate(near_wbc.astype(np.uint8), _disk(max(1, round(12 * s)))).astype(bool)
    r = max(1, round(p.rbc_peak_px * s))
    peaks = (dist >= cv2.dilate(dist, _disk(r))) & (dist >= p.rbc_min_radius * s) & ~near_wbc
    # plateau peaks come as several touching pixels: one marker per blob
    pn, plab, _ = _components(cv2.dilate(peaks.astype(np.uint8), _disk(2)) & fg8)
    markers[plab > 0] = plab[plab > 0] + len(seeds)
    markers[~fg] = 0
    labels = watershed(-dist, markers, mask=fg)
    return labels, len(seeds) + pn - 1


def segment_classical(rgb: np.ndarray, params: ClassicalParams | None = None) -> Segmentation:
    """Segment one PBC image into RBC / WBC / PLT cells plus a cell-free background (see module doc)."""
    from naturalize.segment.assign import judge_regions

    p = params or ClassicalParams()
    rgb = as_rgb(rgb)
    fg, stain = foreground_and_stain(rgb, p)
    seeds, plts = find_nuclei(fg, stain, p)
    labels, n = split_regions(fg, seeds, p)
    cells = judge_regions(rgb, labels, n, len(seeds), plts, stain, rim_px=p.rim_px)
    return finish(rgb, cells)
