"""White-cell variety (`compose --wbc-scale`): more looks from the same white cells, nothing a
hematologist reads changed (a uniform scale keeps nucleus shape and chromatin).

In: the centre cell's per-variant transforms (drawn by library.load_library), the areas (px) of its
sprites and of every white cell of the class in the bank, a Generator. Out: the transforms with their
scale replaced, so each variant's cell has an equivalent diameter drawn uniformly from the class's own
range (10th to 90th percentile of the bank's cells of the class), the factor kept within SCALE_LIMIT.
"""

from __future__ import annotations

import numpy as np

from naturalize.compose.transform import Transform

#: The class's size range: these percentiles of its cells' equivalent diameters (sqrt of the area).
SIZE_PERCENTILES = (10, 90)
#: A cell is never scaled by more than this factor either way (larger changes resample visibly).
SCALE_LIMIT = 1.25


def size_range(class_areas: np.ndarray) -> tuple[float, float]:
    """(low, high) equivalent diameter (sqrt px) of the class's cells."""
    d = np.sqrt(np.asarray(class_areas, float))
    lo, hi = np.percentile(d, SIZE_PERCENTILES)
    return float(lo), float(hi)


def sized(transforms: list[list[Transform]], areas: np.ndarray, class_areas: np.ndarray,
          rng: np.random.Generator) -> list[list[Transform]]:
    """Per sprite (its area in `areas`) and variant: the transform with scale = target / own diameter,
    target ~ U(size_range(class_areas)), clipped to [1 / SCALE_LIMIT, SCALE_LIMIT]."""
    lo, hi = size_range(class_areas)
    out = []
    for ts, area in zip(transforms, np.sqrt(np.asarray(areas, float))):
        targets = rng.uniform(lo, hi, len(ts))
        out.append([t._replace(scale=float(np.clip(d / max(area, 1.0), 1 / SCALE_LIMIT, SCALE_LIMIT)))
                    for t, d in zip(ts, targets)])
    return out
