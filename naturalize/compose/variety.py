"""White-cell variety (`compose --wbc-scale`, `--wbc-stain`, `--wbc-warp`, `--wbc-focus`): more looks from the
same white cells, nothing a hematologist reads changed (a uniform scale, a colour gain, a warp of a few px and a
focus change keep nucleus shape and chromatin).

sized: the centre cell's per-variant transforms (drawn by library.load_library), the areas (px) of its
    sprites and of every white cell of the class in the bank, a Generator -> the transforms with their
    scale replaced, so each variant's cell has an equivalent diameter drawn uniformly from the class's own
    range (10th to 90th percentile of the bank's cells of the class), the factor kept within SCALE_LIMIT.
tints: the centre sprites (premultiplied BGRA) and their source plasma colours -> per sprite and variant a
    BGR factor on its stain gain: the cell's mean colour relative to its plasma is moved to that of another
    cell of the class drawn at random (the training set's stain distribution), within TINT_LIMIT.
shape_warp: a sprite and a seed -> the sprite bent by a smooth, area-keeping field of at most WARP_PX px.
edge_sigma / focus_table / refocus: a red-cell sprite's edge blur (px), the blur change from each cell's image
    to each scene's, and a sprite blurred or sharpened by it.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import ArrayLike

from naturalize.compose.transform import Transform

#: The class's size range: these percentiles of its cells' equivalent diameters (sqrt of the area).
SIZE_PERCENTILES = (10, 90)
#: A cell is never scaled by more than this factor either way (larger changes resample visibly).
SCALE_LIMIT = 1.25


def size_range(class_areas: ArrayLike) -> tuple[float, float]:
    """(low, high) equivalent diameter (sqrt px) of the class's cells."""
    d = np.sqrt(np.asarray(class_areas, float))
    lo, hi = np.percentile(d, SIZE_PERCENTILES)
    return float(lo), float(hi)


def sized(
    transforms: list[list[Transform]], areas: ArrayLike, class_areas: ArrayLike, rng: np.random.Generator
) -> list[list[Transform]]:
    """Per sprite (its area in `areas`) and variant: the transform with scale = target / own diameter,
    target ~ U(size_range(class_areas)), clipped to [1 / SCALE_LIMIT, SCALE_LIMIT]."""
    lo, hi = size_range(class_areas)
    out = []
    for ts, area in zip(transforms, np.sqrt(np.asarray(areas, float))):
        targets = rng.uniform(lo, hi, len(ts))
        out.append(
            [
                t._replace(scale=float(np.clip(d / max(area, 1.0), 1 / SCALE_LIMIT, SCALE_LIMIT)))
                for t, d in zip(ts, targets)
            ]
        )
    return out


#: A cell's colour is never changed by more than this factor per channel either way.
TINT_LIMIT = 1.15


def stain_of(bgra: np.ndarray, plasma: np.ndarray) -> np.ndarray:
    """BGR (3,): mean colour of the sprite's opaque pixels (alpha 255: premultiplied = plain colour)
    divided by its source's plasma colour."""
    inside = bgra[bgra[:, :, 3] == 255][:, :3]
    mean = inside.mean(axis=0) if len(inside) else np.asarray(plasma, float)
    return mean / np.maximum(np.asarray(plasma, float), 1.0)


def tints(bgra: list[np.ndarray], plasma: np.ndarray, variants: int, rng: np.random.Generator) -> np.ndarray:
    """(sprites, variants, 3) float32 factors (see module doc)."""
    stains = np.array([stain_of(b, p) for b, p in zip(bgra, plasma)]).reshape(-1, 3)
    other = rng.integers(len(stains), size=(len(stains), variants))
    out = np.clip(stains[other] / np.maximum(stains[:, None, :], 1e-3), 1 / TINT_LIMIT, TINT_LIMIT)
    return out.astype(np.float32)


#: Shape warps (`--wbc-warp`): the largest displacement (px) of a white cell's pixels, and the coarse grid
#: (per axis) its random stream function is drawn on: a few px, bending the outline gently, never folding.
WARP_PX = 2.5
WARP_GRID = 4


def warp_field(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """(h, w, 2) float32 displacement (dx, dy) px: the curl of a random stream function on a WARP_GRID^2 grid,
    smoothly upsampled, so it is divergence-free (areas kept), smooth over the whole sprite, and scaled so
    its largest displacement is U(0.5, 1) x WARP_PX."""
    h, w = shape
    coarse = rng.standard_normal((WARP_GRID, WARP_GRID)).astype(np.float32)
    psi = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    gy, gx = np.gradient(psi)
    d = np.stack([gy, -gx], axis=-1)
    peak = float(np.sqrt((d**2).sum(axis=-1)).max())
    return (d * (WARP_PX * rng.uniform(0.5, 1.0) / max(peak, 1e-9))).astype(np.float32)


def shape_warp(bgra: np.ndarray, seed: int) -> np.ndarray:
    """The premultiplied BGRA sprite (mask = alpha) under warp_field drawn from `seed` (same seed, same bytes)."""
    h, w = bgra.shape[:2]
    d = warp_field((h, w), np.random.default_rng(seed))
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return cv2.remap(bgra, xs + d[..., 0], ys + d[..., 1], cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT)


#: Focus matching (`--wbc-focus`): the reblur (px) of the sharpness estimate, the band (px) around a red
#: cell's outline it is measured on, and the most a cell is sharpened (unsharp-mask amount at sigma 1 px).
REBLUR = 1.0
EDGE_BAND = 4
MAX_SHARPEN = 1.5


def edge_sigma(bgra: np.ndarray) -> float | None:
    """Blur (px, as the sigma of a Gaussian on a step edge) of a red-cell sprite as cut from its image (colour
    kept under alpha 0): the gradient energy E of the green channel in a band around the cell's outline,
    compared with that of the same band reblurred by REBLUR px: a step blurred by s has E ~ 1/s, so
    E / E_reblurred = sqrt(s^2 + REBLUR^2) / s (the pixel grid adds ~0.7 px; blurs beyond ~2.5 px under-read,
    the band cuts their edge profile). None when the band is too small or shows no edge."""
    g = bgra[:, :, 1].astype(np.float32)
    mask = (bgra[:, :, 3] >= 128).view(np.uint8)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * EDGE_BAND + 1,) * 2)
    band = cv2.dilate(mask, k) & ~cv2.erode(mask, k) & 1
    m = EDGE_BAND  # pixels near the crop border lack one side of the edge or the reblur's support
    band[:m], band[-m:], band[:, :m], band[:, -m:] = 0, 0, 0, 0
    if band.sum() < 40:
        return None

    def energy(img: np.ndarray) -> float:
        gx, gy = cv2.Sobel(img, cv2.CV_32F, 1, 0) / 8, cv2.Sobel(img, cv2.CV_32F, 0, 1) / 8
        return float(((gx**2 + gy**2) * band).sum())

    e0, e1 = energy(g), energy(cv2.GaussianBlur(g, (0, 0), REBLUR))
    if e0 <= 0 or e1 <= 0 or e0 / e1 <= 1.0 + 1e-3:
        return None
    return float(REBLUR / np.sqrt((e0 / e1) ** 2 - 1))


def refocus(bgri: np.ndarray, delta: float) -> np.ndarray:
    """Premultiplied BGR + inverse alpha (split_warped) taken from its own focus to one whose blur variance is
    `delta` px^2 larger (> 0: Gaussian blur of sigma sqrt(delta)) or smaller (< 0: unsharp mask at sigma
    1 px, amount -delta up to MAX_SHARPEN: x + a (x - G1 x) undoes a blur of variance a); colour kept
    within the premultiplied range. |delta| < 0.05: the array itself."""
    if abs(delta) < 0.05:
        return bgri
    if delta > 0:
        return cv2.GaussianBlur(bgri, (0, 0), float(np.sqrt(delta)), borderType=cv2.BORDER_REPLICATE)
    a = min(-delta, MAX_SHARPEN)
    x = bgri.astype(np.float32)
    y = np.clip(x * (1 + a) - a * cv2.GaussianBlur(x, (0, 0), 1.0, borderType=cv2.BORDER_REPLICATE), 0, 255)
    y[:, :, :3] = np.minimum(y[:, :, :3], 255 - y[:, :, 3:])
    return np.rint(y).astype(np.uint8)


def focus_table(cell_sigma: ArrayLike, scene_sigma: ArrayLike) -> np.ndarray:
    """(cells, scenes) float32 blur-variance change (px^2) taking each cell's source focus to each scene's."""
    c, s = np.asarray(cell_sigma, np.float32), np.asarray(scene_sigma, np.float32)
    return (s[None, :] ** 2 - c[:, None] ** 2).astype(np.float32)
