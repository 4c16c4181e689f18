"""White-cell variety (`compose --wbc-scale`, `--wbc-stain`): more looks from the same white cells,
nothing a hematologist reads changed (a uniform scale and a colour gain keep nucleus shape and chromatin).

sized: the centre cell's per-variant transforms (drawn by library.load_library), the areas (px) of its
    sprites and of every white cell of the class in the bank, a Generator -> the transforms with their
    scale replaced, so each variant's cell has an equivalent diameter drawn uniformly from the class's own
    range (10th to 90th percentile of the bank's cells of the class), the factor kept within SCALE_LIMIT.
tints: the centre sprites (premultiplied BGRA) and their source plasma colours -> per sprite and variant a
    BGR factor on its stain gain: the cell's mean colour relative to its plasma is moved to that of another
    cell of the class drawn at random (the training set's stain distribution), within TINT_LIMIT.
"""

from __future__ import annotations

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
