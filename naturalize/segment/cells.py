"""Shared segmentation types and pure helpers used by every backend (classical, SAM).

In: an RGB image (HxWx3 uint8) and per-cell boolean masks. Out: `Cell` / `Segmentation` values,
sprite crops (RGBA) and curation flags. No file I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass
class Cell:
    """One segmented cell.

    kind: "RBC" | "WBC" | "PLT"; mask: bool HxW over the full image; score: confidence 0..1;
    touches_border: the mask reaches the image edge; usable: fit for compositing (a whole single
    cell, not a clump or fragment; border cells are never usable); reason: why a cell is not usable
    (one of REASONS, "" when usable). A cell's mask is not changed in place once made (its box is
    computed once, on first use, and kept for that mask).
    """

    kind: str
    mask: np.ndarray
    score: float
    touches_border: bool
    usable: bool
    reason: str = ""
    _box: tuple[np.ndarray, tuple[int, int, int, int]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def area(self) -> int:
        x0, y0, x1, y1 = self.box
        return int(np.count_nonzero(self.mask[y0:y1, x0:x1]))

    @property
    def box(self) -> tuple[int, int, int, int]:
        if self._box is None or self._box[0] is not self.mask:
            self._box = (self.mask, box_of(self.mask))
        return self._box[1]


@dataclass
class Segmentation:
    """All cells of one image, the cell-free background plate (HxWx3 uint8) and curation flags; `mask_counts`: what a
    mask-proposal backend dropped before the cells were made ({} for the classical backend; SAM: MaskCounts)."""

    cells: list[Cell]
    background: np.ndarray
    flags: tuple[str, ...] = field(default_factory=tuple)
    mask_counts: dict = field(default_factory=dict)

    def of_kind(self, kind: str, usable_only: bool = False) -> list[Cell]:
        return [c for c in self.cells if c.kind == kind and (c.usable or not usable_only)]


def with_box(cell: Cell, box: tuple[int, int, int, int]) -> Cell:
    """`cell` with its mask's box already known (a backend that made the mask from a crop knows it)."""
    cell._box = (cell.mask, box)
    return cell


def box_touches_border(box: tuple[int, int, int, int], shape: tuple[int, ...], margin: int = 1) -> bool:
    """`touches_border` of a mask from its box (x0, y0, x1, y1) and the image shape."""
    x0, y0, x1, y1 = box
    return x0 < margin or y0 < margin or x1 > shape[1] - margin or y1 > shape[0] - margin


def as_rgb(image: np.ndarray) -> np.ndarray:
    """Any image array (gray HxW, HxWx1, RGB, RGBA; uint8 or float 0..1) -> contiguous RGB uint8."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        f = img.astype(np.float64)
        if f.size and f.max() <= 1.0:
            f = f * 255.0
        img = np.clip(np.rint(f), 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.ndim == 3 and img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected a gray, RGB or RGBA image, got an array of shape {np.shape(image)}")
    return np.ascontiguousarray(img)


def box_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Tight box (x0, y0, x1, y1) of a non-empty bool mask; x1, y1 exclusive."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("empty mask has no box")
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def solidity(m: np.ndarray) -> float:
    """Mask area over the area of the convex hull of all its parts (0 for an empty mask)."""
    cnts, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not cnts:
        return 0.0
    hull = cv2.contourArea(cv2.convexHull(np.vstack(cnts)))
    return min(1.0, float(m.sum()) / hull) if hull > 0 else 1.0


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Bool mask (any nonzero pixel is in it) with its holes filled: the other pixels not 4-connected to the image
    border through other pixels join it (what scipy.ndimage.binary_fill_holes gives with its default structure;
    one OpenCV flood fill)."""
    h, w = mask.shape
    pad = np.zeros((h + 2, w + 2), np.uint8)
    pad[1:-1, 1:-1] = mask != 0
    cv2.floodFill(pad, None, (0, 0), 2, 0, 0, 4)  # the plate around the mask, reached from the frame
    return pad[1:-1, 1:-1] != 2


def touches_border(mask: np.ndarray, margin: int = 1) -> bool:
    """True when the mask has a pixel within `margin` pixels of the image edge."""
    m = margin
    return bool(mask[:m].any() or mask[-m:].any() or mask[:, :m].any() or mask[:, -m:].any())


def crop_sprite(rgb: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """RGBA tight crop of one cell: colour from `rgb`, alpha 255 inside the mask, 0 outside (`box`: the
    mask's box when known)."""
    x0, y0, x1, y1 = box or box_of(mask)
    rgba = np.empty((y1 - y0, x1 - x0, 4), np.uint8)
    rgba[:, :, :3] = rgb[y0:y1, x0:x1]
    rgba[:, :, 3] = np.where(mask[y0:y1, x0:x1], 255, 0).astype(np.uint8)
    return rgba


def box_iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """IoU of two (x0, y0, x1, y1) boxes."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def curation_flags(cells: list[Cell]) -> tuple[str, ...]:
    """Flags from the WBCs found: multi_wbc (several white cells), no_wbc (none), wbc_cut (cut by the border)."""
    wbcs = [c for c in cells if c.kind == "WBC"]
    flags: list[str] = []
    if len(wbcs) >= 2:
        flags.append("multi_wbc")
    if not wbcs:
        flags.append("no_wbc")
    elif any(c.touches_border for c in wbcs):
        flags.append("wbc_cut")
    return tuple(flags)


def finish(rgb: np.ndarray, cells: list[Cell], also_remove: list[np.ndarray] | tuple = ()) -> Segmentation:
    """Shared last step of every backend: background plate (all cells, and any `also_remove` masks
    such as stain debris, inpainted away) and curation flags."""
    from naturalize.segment.inpaint import remove_cells

    rgb = as_rgb(rgb)
    extra = list(also_remove)
    boxes = [c.box for c in cells] + [None] * len(extra)
    background = remove_cells(rgb, [c.mask for c in cells] + extra, boxes=boxes)
    return Segmentation(cells=cells, background=background, flags=curation_flags(cells))
