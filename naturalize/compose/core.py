"""The pure core of composition: one synthetic image from a Library, a Generator and ComposeParams.

In: Library (premultiplied BGRA sprites, BGR plates, plasma colours), numpy Generator, parameters.
Out: Composite: the BGR uint8 image and, per placed cell, what was placed where and how (sprite,
     top-left position, transform, stain gain, warped mask), in paint order, and which cell each pixel
     shows.

Layout: the class's centre cell is drawn first, then a plate whose own inpainted centre cell was no
larger (so the new cell hides the smudge); the centre cell goes near the image centre (offset drawn
from the distribution measured on real PBC crops); further white cells, red cells and platelets are
rejection-sampled anywhere, may be cut by the border, never touch a white cell (tested on the warped
masks, grown by `wbc_margin`), and may touch each other by at most `rbc_overlap` of their area. Each sprite is one
of its warped variants
(flip, quarter turn, small rotation and scale) mirrored and turned at random, recoloured by the von
Kries gain that maps its source image's plasma colour onto the plate's (per channel: under
Beer-Lambert, a change of illumination or stain tint multiplies every transmitted channel), and
alpha-blended onto its own bounding region only, in integer arithmetic.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import lru_cache
from itertools import chain

import cv2
import numpy as np

from naturalize.compose.library import Library, SpriteSet, Variant
from naturalize.compose.params import ComposeParams
from naturalize.compose.transform import Transform, mirror_turn, turned
from naturalize.compose.variety import refocus

UNIT_GAIN = (1.0, 1.0, 1.0)


@dataclass
class Placed:
    """One pasted cell: role ('centre', 'RBC', 'PLT', 'WBC' for extra white cells), sprite index in its
    SpriteSet, top-left (x, y) of the warped sprite in image pixels (may be negative), the warped and
    premultiplied BGR with inverse alpha (255 - alpha) as 4th channel, mask (uint8 0/255, alpha >= 128)
    and its area, transform and stain gain (BGR; applied when painted); white-cell variety: the seed of
    its shape warp and its focus change (px^2 blur variance), None when off."""

    role: str
    index: int
    x: int
    y: int
    bgri: np.ndarray
    mask: np.ndarray
    area: int
    transform: Transform
    gain: tuple[float, float, float]
    warp: int | None = None
    focus: float | None = None


@dataclass
class Composite:
    """A composed image (BGR uint8 HxWx3), the plate index it was built on, its cells in paint order and
    which cell each pixel shows (`paint`'s label map)."""

    image: np.ndarray
    plate: int
    cells: list[Placed]
    labels: np.ndarray


def recolour(bgr: np.ndarray, gain: tuple[float, float, float]) -> np.ndarray:
    """Premultiplied BGR uint8 with each channel multiplied by its gain (rounded, saturated)."""
    m = np.zeros((3, 3))
    m[0, 0], m[1, 1], m[2, 2] = gain
    return cv2.transform(bgr, m)


def clip_box(x: int, y: int, w: int, h: int, width: int, height: int) -> tuple[int, int, int, int] | None:
    """The part (x0, y0, x1, y1) of a w x h box at (x, y) inside a width x height image, None when outside."""
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


class Occupancy:
    """Where white cells (grown by a margin) and small cells already are: two uint8 0/255 maps, and the
    box around all white-cell pixels (a cell outside it cannot touch one). free_centres: a cell whose centre
    pixel (when in its mask) lands on a small cell is refused at once (the matched scene's sampler: such a
    cell lies on the other by ~40 % of its area or more, far above any allowed overlap, so only the odd
    irregular pair is refused that the full test would let touch)."""

    def __init__(self, width: int, height: int, free_centres: bool = False):
        self.white = np.zeros((height, width), np.uint8)
        self.small = np.zeros((height, width), np.uint8)
        self.white_box: tuple[int, int, int, int] | None = None
        self.free_centres = free_centres

    def centre_taken(self, cx: int, cy: int) -> bool:
        """Whether a cell centred on pixel (cx, cy) (in its mask) is refused at once: the pixel is on a white cell
        (the cheapest certain collision), or, with free_centres, on a small cell."""
        return bool(self.white[cy, cx]) or (self.free_centres and bool(self.small[cy, cx]))

    def fits(self, mask: np.ndarray, x: int, y: int, area: int, min_visible: float, overlap: float) -> bool:
        """Whether `mask` (uint8 0/255) at (x, y) keeps min_visible of `area` inside the image, stays off
        white cells and lies on small cells by at most `overlap` of its area (called ~100 times per image:
        the box clipped inline, each map tested with one masked cv2.norm, no temporary array)."""
        h, w = mask.shape
        white = self.white
        H, W = white.shape
        x0, y0, x1, y1 = x if x > 0 else 0, y if y > 0 else 0, x + w, y + h
        cut = x0 != x or y0 != y  # else every mask pixel is inside
        if x1 > W:
            x1, cut = W, True
        if y1 > H:
            y1, cut = H, True
        if x1 <= x0 or y1 <= y0 or (x1 - x0) * (y1 - y0) < min_visible * area:  # too little of even the box is in
            return False
        cx, cy = x + w // 2, y + h // 2
        if 0 <= cx < W and 0 <= cy < H and mask[h // 2, w // 2] and self.centre_taken(cx, cy):
            return False
        wb = self.white_box
        near_white = wb is not None and x0 < wb[2] and wb[0] < x1 and y0 < wb[3] and wb[1] < y1
        m = mask[y0 - y : y1 - y, x0 - x : x1 - x] if cut else mask
        if cut and min_visible > 0 and cv2.countNonZero(m) < min_visible * area:
            return False
        # the maps are 0/255: a masked L1 norm is 255 x the pixels shared
        if near_white and cv2.norm(white[y0:y1, x0:x1], cv2.NORM_INF, mask=m):
            return False
        return cv2.norm(self.small[y0:y1, x0:x1], cv2.NORM_L1, mask=m) / 255 <= overlap * area

    def mark(self, mask: np.ndarray, x: int, y: int, white: bool) -> None:
        """Add `mask` at (x, y) to the white or the small-cell map."""
        target = self.white if white else self.small
        H, W = target.shape
        box = clip_box(x, y, mask.shape[1], mask.shape[0], W, H)
        if box is not None:
            x0, y0, x1, y1 = box
            region, m = target[y0:y1, x0:x1], mask[y0 - y : y1 - y, x0 - x : x1 - x]
            cv2.bitwise_or(region, m, dst=region)
            bx, by, bw, bh = cv2.boundingRect(m) if white else (0, 0, 0, 0)
            if bw:  # the box of the white pixels themselves (a rotated sprite's canvas has empty corners)
                x0, y0, x1, y1 = x0 + bx, y0 + by, x0 + bx + bw, y0 + by + bh
                wb = self.white_box or (x0, y0, x1, y1)
                self.white_box = (min(wb[0], x0), min(wb[1], y0), max(wb[2], x1), max(wb[3], y1))


def _grow(mask: np.ndarray, r: int) -> tuple[np.ndarray, int]:
    """Mask dilated by r pixels on a canvas padded by r; returns it and the padding."""
    if r <= 0:
        return mask, 0
    m = cv2.copyMakeBorder(mask, r, r, r, r, cv2.BORDER_CONSTANT, value=0)
    return cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))), r


def choose_plate(lib: Library, rng: np.random.Generator, centre: int | None) -> int:
    """A plate at random; with a centre sprite, one whose own (inpainted) centre cell was no larger than
    that sprite, so the new cell covers the smudge inpainting leaves (the smallest-cell plate if none)."""
    if centre is None:
        return int(rng.integers(len(lib.plates)))
    fits = int(np.searchsorted(lib.plate_centre_area_sorted, lib.centre.areas[centre], side="right"))
    return int(lib.plate_by_centre_area[int(rng.integers(max(fits, 1)))])


def draw_cell(
    rng: np.random.Generator,
    sset: SpriteSet,
    role: str,
    plate: int,
    index: int | None = None,
    look: int | None = None,
) -> Placed:
    """Draw a sprite of the set (or take `index`) and one of its variants, mirrored and turned at random
    (8 exact looks per variant; or take `look`, an index into its variants' looks, with `index`), with its
    stain gain on the plate (applied by `paint`); at (0, 0) until placed."""
    looks = 8 * len(sset.transforms[0])
    if index is None:
        i, r = divmod(int(rng.integers(len(sset) * looks)), looks)
    else:
        i, r = index, int(rng.integers(looks)) if look is None else look
    v, turn = sset.variant(i, r // 8), mirror_turn(bool(r & 4), r & 3)
    return _dressed(sset, role, plate, i, r, v, v.mask if turn is None else turn(v.mask))


def _dressed(sset: SpriteSet, role: str, plate: int, i: int, r: int, v: Variant, mask: np.ndarray) -> Placed:
    """Look r of sprite i (variant v, its `mask` already mirrored and turned) as a Placed cell at (0, 0): its
    colour mirrored and turned the same way, its stain gain on the plate and its white-cell variety."""
    flip, turns = bool(r & 4), r & 3
    turn = mirror_turn(flip, turns)
    bgri = v.bgri if turn is None else turn(v.bgri)
    gain = UNIT_GAIN if sset.gains is None else tuple(sset.gains[plate, i].tolist())
    if sset.tints is not None:  # white-cell variety: this variant's own stain (variety.tints)
        gain = tuple((np.asarray(gain) * sset.tints[i, r // 8]).tolist())
    focus = None
    if sset.focus is not None:  # white-cell variety: to the plate's own focus (variety.refocus)
        focus = round(float(sset.focus[i, plate]), 4)
        bgri = refocus(bgri, focus)
    t = turned(v.transform, flip, turns)
    return Placed(role, i, 0, 0, bgri, mask, v.area, t, gain, sset.warp_seed(i, r // 8), focus)


def _candidates(rng: np.random.Generator, n: int) -> Iterator[list[float]]:
    """n more candidate positions (x, y in [0, 1)), drawn only when the first is asked for."""
    yield from rng.random((n, 2)).tolist()


def compose_image(lib: Library, rng: np.random.Generator, p: ComposeParams) -> Composite:
    """One composite (see module doc), at p.canvas. Depends only on lib, the generator's state and p."""
    W, H = p.canvas
    centre = int(rng.integers(len(lib.centre)))
    k = choose_plate(lib, rng, centre if p.wbc > 0 else None)
    image = lib.plates[k].copy()
    occ = Occupancy(W, H, free_centres=getattr(lib.scene, "free_centres", False))
    placed: list[Placed] = []

    def place_white(cell: Placed, x: int, y: int) -> None:
        cell.x, cell.y = x, y
        grown, r = _grow(cell.mask, p.wbc_margin)
        occ.mark(grown, x - r, y - r, white=True)
        placed.append(cell)

    if p.wbc > 0:  # the class's cell, near the centre as in every PBC crop
        cell = draw_cell(rng, lib.centre, "centre", k, index=centre)
        d = np.asarray(p.centre_offset) + rng.laplace(0.0, 1.0, 2) * np.asarray(p.centre_jitter)
        dx, dy = np.clip(d, -p.centre_max, p.centre_max)
        h, w = cell.mask.shape
        place_white(cell, int(round(W / 2 + dx - w / 2)), int(round(H / 2 + dy - h / 2)))
    for _ in range(p.wbc - 1):  # further white cells of the class: anywhere, touching nothing
        cell = draw_cell(rng, lib.centre, "WBC", k)
        grown, r = _grow(cell.mask, p.wbc_margin)
        h, w = cell.mask.shape
        for fx, fy in rng.random((p.tries, 2)).tolist():
            x, y = int(fx * W) - w // 2, int(fy * H) - h // 2
            if occ.fits(grown, x - r, y - r, cell.area, p.min_visible, 0.0) and occ.fits(
                cell.mask, x, y, cell.area, 0, 0.0
            ):
                place_white(cell, x, y)
                occ.mark(cell.mask, x, y, white=False)
                break
    n_plt = int(rng.integers(p.platelets[0], p.platelets[1] + 1)) if len(lib.plt) else 0
    smalls = [lib.rbc] * (p.rbc if len(lib.rbc) else 0) + [lib.plt] * n_plt
    pool = getattr(lib.scene, "rbc_pool", None)  # a scene may draw each plate's red cells from a few sources

    batch = min(getattr(lib.scene, "batch_draws", 0), p.tries)
    if batch:
        _place_batched(rng, p, k, occ, placed, smalls, pool, batch)
    for n, sset in enumerate([] if batch else smalls):  # one cell at a time, as the paper scene always drew
        pick = int(pool[k][rng.integers(len(pool[k]))]) if pool is not None and n < p.rbc else None
        cell = draw_cell(rng, sset, "RBC" if n < p.rbc else "PLT", k, index=pick)
        h, w = cell.mask.shape
        for fx, fy in rng.random((p.tries, 2)).tolist():
            x, y = int(fx * W) - w // 2, int(fy * H) - h // 2
            if occ.fits(cell.mask, x, y, cell.area, p.min_visible, p.rbc_overlap):
                cell.x, cell.y = x, y
                occ.mark(cell.mask, x, y, white=False)
                placed.append(cell)
                break
    # paint small cells first, white cells last (nothing overlaps a white cell anyway)
    order = [c for c in placed if c.role in ("RBC", "PLT")] + [c for c in placed if c.role in ("centre", "WBC")]
    return Composite(image, k, order, paint(image, order))


def _place_batched(
    rng: np.random.Generator,
    p: ComposeParams,
    plate: int,
    occ: Occupancy,
    placed: list[Placed],
    smalls: list[SpriteSet],
    pool: list[np.ndarray] | None,
    batch: int,
) -> None:
    """The small cells of one image, sampled as the matched scene does (its `batch_draws`): every cell's sprite
    (from the plate's pool for red cells), look and first `batch` candidate positions from one draw per image
    (numpy calls are slow), more candidates drawn only when needed. A candidate refused by
    Occupancy.centre_taken is skipped before the rest of Occupancy.fits; the sprite's colour is turned only once
    it has a place."""
    W, H = p.canvas
    for n, (sset, u) in enumerate(zip(smalls, rng.random((len(smalls), 2 + 2 * batch)).tolist())):
        own = pool[plate] if pool is not None and n < p.rbc else None
        i = int(own[int(u[0] * len(own))]) if own is not None else int(u[0] * len(sset))
        r = int(u[1] * 8 * len(sset.transforms[0]))
        v, turn = sset.variant(i, r // 8), mirror_turn(bool(r & 4), r & 3)
        mask = v.mask if turn is None else turn(v.mask)
        h, w = mask.shape
        hw, hh = w // 2, h // 2
        centred = bool(mask[hh, hw])
        for fx, fy in chain(zip(u[2::2], u[3::2]), _candidates(rng, p.tries - batch)):
            cx, cy = int(fx * W), int(fy * H)  # the candidate's centre pixel (always in the image)
            if centred and occ.centre_taken(cx, cy):  # Occupancy.fits would refuse it too
                continue
            if occ.fits(mask, cx - hw, cy - hh, v.area, p.min_visible, p.rbc_overlap):
                cell = _dressed(sset, "RBC" if n < p.rbc else "PLT", plate, i, r, v, mask)
                cell.x, cell.y = cx - hw, cy - hh
                occ.mark(mask, cell.x, cell.y, white=False)
                placed.append(cell)
                break


def resized(comp: Composite, size: tuple[int, int]) -> Composite:
    """The composite scaled as a whole to `size` (width, height): the image by area averaging, the label map
    by nearest neighbour, each cell's position and mask by the same factors (so its record's box, mask and
    position are those of the written image). The composite itself when it already has that size."""
    H0, W0 = comp.image.shape[:2]
    W, H = size
    if (W, H) == (W0, H0):
        return comp
    cells = []
    for c in comp.cells:
        h, w = c.mask.shape
        x0, y0, shape_w, shape_h = scaled_box(c.x, c.y, w, h, (W0, H0), (W, H))
        mask = cv2.resize(np.ascontiguousarray(c.mask), (shape_w, shape_h), interpolation=cv2.INTER_NEAREST)
        cells.append(replace(c, x=x0, y=y0, mask=mask, area=cv2.countNonZero(mask)))
    image = cv2.resize(comp.image, (W, H), interpolation=cv2.INTER_AREA)
    return Composite(image, comp.plate, cells, cv2.resize(comp.labels, (W, H), interpolation=cv2.INTER_NEAREST))


def scaled_box(x: int, y: int, w: int, h: int, old: tuple[int, int], new: tuple[int, int]) -> tuple[int, int, int, int]:
    """The box (x, y, w, h) of an image of size `old` (width, height) in that image resized to `new` by OpenCV's
    nearest neighbour: the output pixels showing its pixels (at least 1 x 1; the box itself when the sizes agree)."""
    if old == new:
        return x, y, w, h
    sx, sy = _nearest_sources(old[0], new[0]), _nearest_sources(old[1], new[1])
    x0, x1 = _edge(x, sx, old[0]), _edge(x + w, sx, old[0])
    y0, y1 = _edge(y, sy, old[1]), _edge(y + h, sy, old[1])
    return x0, y0, max(1, x1 - x0), max(1, y1 - y0)


@lru_cache(maxsize=8)
def _nearest_sources(old: int, new: int) -> np.ndarray:
    """Which source pixel each of `new` output pixels shows when `old` pixels are resized by OpenCV's nearest
    neighbour (read off OpenCV itself: its float arithmetic is not exactly floor(u * old / new))."""
    ramp = np.arange(old, dtype=np.uint16)[None, :]
    return cv2.resize(ramp, (new, 1), interpolation=cv2.INTER_NEAREST)[0].astype(np.int64)


def _edge(v: int, sources: np.ndarray, old: int) -> int:
    """The first output pixel showing source pixel `v` (of `old`) or a later one (`_nearest_sources`); outside the
    image, ceil(v * new / old), so a canvas cut by the border keeps its scaled size."""
    new = len(sources)
    if 0 <= v <= old:
        return int(np.searchsorted(sources, v))
    return -((-v * new) // old)


def paint(image: np.ndarray, cells: list[Placed]) -> np.ndarray:
    """Blend the placed cells onto BGR `image` in order, in place, each onto its own region only:
    out = bgr + image * inv / 255 (premultiplied colour; rounded, saturated). Returns the H x W label map
    of which cell each pixel shows: n + 1 for cells[n] where its mask is visible (not painted over by a
    later cell), 0 for the plate (uint8, uint16 beyond 255 cells)."""
    H, W = image.shape[:2]
    labels = np.zeros((H, W), np.uint8 if len(cells) < 256 else np.uint16)
    for n, c in enumerate(cells, start=1):
        box = clip_box(c.x, c.y, c.mask.shape[1], c.mask.shape[0], W, H)
        if box is None:
            continue
        x0, y0, x1, y1 = box
        sy, sx = slice(y0 - c.y, y1 - c.y), slice(x0 - c.x, x1 - c.x)
        region = image[y0:y1, x0:x1]  # OpenCV writes into the view
        bgri = c.bgri[sy, sx]
        bgr = cv2.cvtColor(bgri, cv2.COLOR_BGRA2BGR)
        if c.gain != UNIT_GAIN:
            bgr = recolour(bgr, c.gain)
        inv = cv2.cvtColor(cv2.extractChannel(bgri, 3), cv2.COLOR_GRAY2BGR)
        cv2.add(cv2.multiply(region, inv, scale=1 / 255), bgr, dst=region)
        # later cells (higher n) are painted over earlier ones: a pixel's label is the largest n on it
        m, region = c.mask[sy, sx], labels[y0:y1, x0:x1]
        np.maximum(region, m & n if n < 256 else (m > 0) * np.uint16(n), out=region)
    return labels
