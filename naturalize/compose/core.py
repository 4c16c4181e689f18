"""The pure core of composition: one synthetic image from a Library, a Generator and ComposeParams.

In: Library (premultiplied BGRA sprites, BGR plates, plasma colours), numpy Generator, parameters.
Out: Composite: the BGR uint8 image and, per placed cell, what was placed where and how (sprite,
     top-left position, transform, stain gain, warped alpha), in paint order.

Layout: the class's centre cell is drawn first, then a plate whose own inpainted centre cell was no
larger (so the new cell hides the smudge); the centre cell goes near the image centre (offset drawn
from the distribution measured on real PBC crops); further white cells, red cells and platelets are rejection-sampled anywhere, may be
cut by the border, never touch a white cell (tested on the warped masks, grown by `wbc_margin`), and
may touch each other by at most `rbc_overlap` of their area. Each sprite is one of its warped variants
(flip, quarter turn, small rotation and scale) mirrored and turned at random, recoloured by the von
Kries gain that maps its source image's plasma colour onto the plate's (per channel: under
Beer-Lambert, a change of illumination or stain tint multiplies every transmitted channel), and
alpha-blended onto its own bounding region only, in integer arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from naturalize.compose.library import Library, SpriteSet
from naturalize.compose.transform import Transform, turn_arrays, turned
from naturalize.compose.params import ComposeParams

#: Stain gains are clipped to this range (a plate far from the sprite's source is not trusted further).
GAIN_RANGE = (0.67, 1.5)


@dataclass
class Placed:
    """One pasted cell: role ('centre', 'RBC', 'PLT', 'WBC' for extra white cells), sprite index in its
    SpriteSet, top-left (x, y) of the warped sprite in image pixels (may be negative), the warped and
    recoloured premultiplied BGR, its alpha (uint8), mask (uint8 0/255, alpha >= 128), transform and
    stain gain (BGR)."""

    role: str
    index: int
    x: int
    y: int
    bgr: np.ndarray
    alpha: np.ndarray
    mask: np.ndarray
    transform: Transform
    gain: np.ndarray


@dataclass
class Composite:
    """A composed image (BGR uint8 HxWx3), the plate index it was built on, and its cells in paint order."""

    image: np.ndarray
    plate: int
    cells: list[Placed]


def stain_gain(src_plasma: np.ndarray, dst_plasma: np.ndarray) -> np.ndarray:
    """Per-channel gain (BGR) taking the sprite's source plasma colour to the plate's, clipped to GAIN_RANGE."""
    return np.clip(dst_plasma / np.maximum(src_plasma, 1.0), *GAIN_RANGE)


def recolour(bgr: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """Premultiplied BGR uint8 with each channel multiplied by `gain` (rounded, saturated)."""
    return cv2.transform(bgr, np.diag(gain.astype(np.float64)))


def clip_box(x: int, y: int, w: int, h: int, width: int, height: int) -> tuple[int, int, int, int] | None:
    """The part (x0, y0, x1, y1) of a w x h box at (x, y) inside a width x height image, None when outside."""
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def blend(image: np.ndarray, bgr: np.ndarray, alpha: np.ndarray, x: int, y: int) -> None:
    """Paint premultiplied `bgr` with `alpha` at top-left (x, y) onto BGR `image` in place, touching only
    the sprite's region: out = bgr + image * (255 - alpha) / 255 (rounded, saturated)."""
    H, W = image.shape[:2]
    h, w = alpha.shape
    box = clip_box(x, y, w, h, W, H)
    if box is None:
        return
    x0, y0, x1, y1 = box
    sy, sx = slice(y0 - y, y1 - y), slice(x0 - x, x1 - x)
    inv = cv2.cvtColor(cv2.bitwise_not(alpha[sy, sx]), cv2.COLOR_GRAY2BGR)
    image[y0:y1, x0:x1] = cv2.add(cv2.multiply(image[y0:y1, x0:x1], inv, scale=1 / 255), bgr[sy, sx])


class Occupancy:
    """Where white cells (grown by a margin) and small cells already are: two uint8 0/255 maps."""

    def __init__(self, width: int, height: int):
        self.white = np.zeros((height, width), np.uint8)
        self.small = np.zeros((height, width), np.uint8)

    def fits(self, mask: np.ndarray, x: int, y: int, area: int, min_visible: float, overlap: float) -> bool:
        """Whether `mask` (uint8 0/255) at (x, y) keeps min_visible of `area` inside the image, stays off
        white cells and lies on small cells by at most `overlap` of its area."""
        H, W = self.white.shape
        box = clip_box(x, y, mask.shape[1], mask.shape[0], W, H)
        if box is None:
            return False
        x0, y0, x1, y1 = box
        m = mask[y0 - y:y1 - y, x0 - x:x1 - x]
        if cv2.countNonZero(m) < min_visible * area:
            return False
        if cv2.countNonZero(cv2.bitwise_and(self.white[y0:y1, x0:x1], m)):
            return False
        return cv2.countNonZero(cv2.bitwise_and(self.small[y0:y1, x0:x1], m)) <= overlap * area

    def mark(self, mask: np.ndarray, x: int, y: int, white: bool) -> None:
        """Add `mask` at (x, y) to the white or the small-cell map."""
        target = self.white if white else self.small
        H, W = target.shape
        box = clip_box(x, y, mask.shape[1], mask.shape[0], W, H)
        if box is not None:
            x0, y0, x1, y1 = box
            target[y0:y1, x0:x1] |= mask[y0 - y:y1 - y, x0 - x:x1 - x]


def _grow(mask: np.ndarray, r: int) -> tuple[np.ndarray, int]:
    """Mask dilated by r pixels on a canvas padded by r; returns it and the padding."""
    if r <= 0:
        return mask, 0
    m = cv2.copyMakeBorder(mask, r, r, r, r, cv2.BORDER_CONSTANT, value=0)
    return cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))), r


_ONES = np.ones(3, np.float32)


def choose_plate(lib: Library, rng: np.random.Generator, centre: int | None) -> int:
    """A plate at random; with a centre sprite, one whose own (inpainted) centre cell was no larger than
    that sprite, so the new cell covers the smudge inpainting leaves (the smallest-cell plate if none)."""
    if centre is None:
        return int(rng.integers(len(lib.plates)))
    fits = int(np.searchsorted(lib.plate_centre_area_sorted, lib.centre.areas[centre], side="right"))
    return int(lib.plate_by_centre_area[int(rng.integers(max(fits, 1)))])


def _prepare(rng: np.random.Generator, sset: SpriteSet, p: ComposeParams, role: str,
             plate_plasma: np.ndarray, index: int | None = None) -> tuple[Placed, int]:
    """Draw a sprite of the set (or take `index`) and one of its variants, recolour it (position (0, 0)
    until placed); returns it and its mask area."""
    i = int(rng.integers(len(sset))) if index is None else index
    # one of the sprite's warped variants, mirrored and turned at random: 8 exact looks per variant
    r = int(rng.integers(8 * len(sset.transforms[i])))
    v, flip, turns = sset.variant(i, r // 8), bool(r & 4), r & 3
    bgr, alpha, mask = turn_arrays((v.bgr, v.alpha, v.mask), flip, turns)
    area, t = v.area, turned(v.transform, flip, turns)
    gain = _ONES
    if p.stain:
        g = stain_gain(sset.plasma[i], plate_plasma)
        if np.abs(g - 1).max() > 0.004:  # below that no channel moves by a level: skip the work
            gain, bgr = g, recolour(bgr, g)
    return Placed(role, i, 0, 0, bgr, alpha, mask, t, gain), area


def compose_image(lib: Library, rng: np.random.Generator, p: ComposeParams) -> Composite:
    """One composite (see module doc). Depends only on lib, the generator's state and p."""
    W, H = p.size
    centre = int(rng.integers(len(lib.centre)))
    k = choose_plate(lib, rng, centre if p.wbc > 0 else None)
    image = lib.plates[k].copy()
    plasma = lib.plate_plasma[k]
    occ = Occupancy(W, H)
    placed: list[Placed] = []

    def place_white(cell: Placed, x: int, y: int) -> None:
        cell.x, cell.y = x, y
        grown, r = _grow(cell.mask, p.wbc_margin)
        occ.mark(grown, x - r, y - r, white=True)
        placed.append(cell)

    if p.wbc > 0:  # the class's cell, near the centre as in every PBC crop
        cell, _ = _prepare(rng, lib.centre, p, "centre", plasma, index=centre)
        d = np.asarray(p.centre_offset) + rng.laplace(0.0, 1.0, 2) * np.asarray(p.centre_jitter)
        dx, dy = np.clip(d, -p.centre_max, p.centre_max)
        h, w = cell.mask.shape
        place_white(cell, int(round(W / 2 + dx - w / 2)), int(round(H / 2 + dy - h / 2)))
    for _ in range(p.wbc - 1):  # further white cells of the class: anywhere, touching nothing
        cell, area = _prepare(rng, lib.centre, p, "WBC", plasma)
        grown, r = _grow(cell.mask, p.wbc_margin)
        h, w = cell.mask.shape
        for fx, fy in rng.random((p.tries, 2)):
            x, y = int(fx * W) - w // 2, int(fy * H) - h // 2
            if occ.fits(grown, x - r, y - r, area, p.min_visible, 0.0) and occ.fits(cell.mask, x, y, area, 0, 0.0):
                place_white(cell, x, y)
                occ.mark(cell.mask, x, y, white=False)
                break
    n_plt = int(rng.integers(p.platelets[0], p.platelets[1] + 1)) if len(lib.plt) else 0
    smalls = [lib.rbc] * (p.rbc if len(lib.rbc) else 0) + [lib.plt] * n_plt
    for n, sset in enumerate(smalls):
        cell, area = _prepare(rng, sset, p, "RBC" if n < p.rbc else "PLT", plasma)
        h, w = cell.mask.shape
        for fx, fy in rng.random((p.tries, 2)):
            x, y = int(fx * W) - w // 2, int(fy * H) - h // 2
            if occ.fits(cell.mask, x, y, area, p.min_visible, p.rbc_overlap):
                cell.x, cell.y = x, y
                occ.mark(cell.mask, x, y, white=False)
                placed.append(cell)
                break
    # paint small cells first, white cells last (nothing overlaps a white cell anyway)
    order = [c for c in placed if c.role in ("RBC", "PLT")] + [c for c in placed if c.role in ("centre", "WBC")]
    for c in order:
        blend(image, c.bgr, c.alpha, c.x, c.y)
    return Composite(image, k, order)


def visible_masks(comp: Composite) -> list[tuple[tuple[int, int, int, int], np.ndarray] | None]:
    """Per cell (paint order): (x0, y0, x1, y1) inside the image and the bool mask of its pixels that
    stay visible (not painted over by a later cell); None when nothing of it is visible."""
    H, W = comp.image.shape[:2]
    boxes = [clip_box(c.x, c.y, c.mask.shape[1], c.mask.shape[0], W, H) for c in comp.cells]
    out: list[tuple[tuple[int, int, int, int], np.ndarray] | None] = []
    for n, (c, box) in enumerate(zip(comp.cells, boxes)):
        if box is None:
            out.append(None)
            continue
        x0, y0, x1, y1 = box
        vis = c.mask[y0 - c.y:y1 - c.y, x0 - c.x:x1 - c.x] > 0
        for later, lb in zip(comp.cells[n + 1:], boxes[n + 1:]):
            if lb is None or lb[0] >= x1 or lb[2] <= x0 or lb[1] >= y1 or lb[3] <= y0:
                continue
            ox0, oy0, ox1, oy1 = max(x0, lb[0]), max(y0, lb[1]), min(x1, lb[2]), min(y1, lb[3])
            vis[oy0 - y0:oy1 - y0, ox0 - x0:ox1 - x0] &= later.mask[oy0 - later.y:oy1 - later.y, ox0 - later.x:ox1 - later.x] == 0
        out.append((box, vis) if vis.any() else None)
    return out
