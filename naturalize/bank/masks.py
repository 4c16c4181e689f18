"""The mask of a sprite the quality gate rejected, stored in index.csv's `mask` column instead of a PNG file.

In: a mask (h, w) or its string. Out: a COCO RLE string (pycocotools' compact counts) or the bool mask again.
"""

from __future__ import annotations

import numpy as np


def encode_mask(mask: np.ndarray) -> str:
    """COCO RLE (pycocotools' compact counts string) of a mask (h, w; nonzero = inside); deterministic."""
    from pycocotools import mask as rle

    return rle.encode(np.asfortranarray(mask != 0, dtype=np.uint8))["counts"].decode("ascii")


def decode_mask(counts: str, h: int, w: int) -> np.ndarray:
    """Bool mask (h, w) of an `encode_mask` string."""
    from pycocotools import mask as rle

    return rle.decode({"size": [h, w], "counts": counts.encode("ascii")}).astype(bool)
