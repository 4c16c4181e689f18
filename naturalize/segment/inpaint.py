"""Remove every cell from an image: a cell-free background plate.

In: RGB uint8 HxWx3 and a list of bool HxW cell masks. Out: RGB uint8 HxWx3 where the dilated union
of the masks is filled from the surrounding plate (OpenCV inpainting at reduced scale, then a soft
blend back into the full-resolution image so no cell edge or seam remains).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

Box = tuple[int, int, int, int]


def union_mask(
    shape: tuple[int, int], masks: list[np.ndarray], dilate: int = 4, boxes: Sequence[Box | None] | None = None
) -> np.ndarray:
    """Bool HxW union of `masks`, grown by `dilate` pixels so the cells' halos go too; `boxes`: each mask's box
    (x0, y0, x1, y1), or None where unknown (only the box is read)."""
    out = np.zeros(shape, np.uint8)
    for m, b in zip(masks, boxes or [None] * len(masks)):
        if b is None:
            out[m] = 1
        else:
            x0, y0, x1, y1 = b
            out[y0:y1, x0:x1][m[y0:y1, x0:x1]] = 1
    if dilate > 0 and out.any():
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate + 1, 2 * dilate + 1))
        out = cv2.dilate(out, k)
    return out.astype(bool)


def remove_cells(
    rgb: np.ndarray,
    masks: list[np.ndarray],
    dilate: int = 4,
    scale: float = 0.25,
    radius: int = 3,
    boxes: Sequence[Box | None] | None = None,
) -> np.ndarray:
    """Background plate: `rgb` with every cell in `masks` inpainted away (see module doc); `boxes`: as for
    `union_mask`."""
    h, w = rgb.shape[:2]
    hole = union_mask((h, w), masks, dilate, boxes)
    if not hole.any():
        return rgb.copy()
    sw, sh = max(8, int(round(w * scale))), max(8, int(round(h * scale)))
    small = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA)
    small_hole = cv2.resize(hole.view(np.uint8) * 255, (sw, sh), interpolation=cv2.INTER_AREA) > 0
    filled = cv2.inpaint(small, small_hole.view(np.uint8), radius, cv2.INPAINT_TELEA)
    up = cv2.resize(filled, (w, h), interpolation=cv2.INTER_CUBIC)
    # soft alpha: 1 inside the hole, fading to 0 over a few pixels outside it
    inside = hole.astype(np.float32)
    alpha = np.maximum(cv2.GaussianBlur(inside, (0, 0), 2.0), inside)
    return cv2.blendLinear(up, np.ascontiguousarray(rgb), alpha, 1.0 - alpha)  # rounded, saturated uint8
