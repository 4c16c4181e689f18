"""The same picture in other bytes: a small grey thumbnail per image, and the pairs whose thumbnails agree.

A JPEG re-saved as PNG (or BMP, WebP, or as JPEG at another quality) holds other bytes, so a byte hash misses it;
its 16x16 thumbnail correlates with the original's at 0.9995 or more, while distinct PBC crops stay below 0.96
(the shared 3,306-image sample: the most alike distinct pair correlates at 0.957). A resized or cropped copy is
another picture here: it is not matched.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SIDE = 16  # thumbnail side
SAME_PICTURE = 0.998  # correlation at or above which two thumbnails are taken for one picture
_BLOCK = 1024  # rows compared at a time (memory: BLOCK x images floats)


def thumbnail(im: Image.Image) -> bytes:
    """The SIDE x SIDE grey thumbnail of a loaded image, as bytes. A JPEG is expected decoded at 1/8 scale (its
    draft mode, as the scan reads it); any other image is reduced by 8 first, so both give the same thumbnail."""
    small = im if im.format == "JPEG" else im.reduce(8) if min(im.size) >= 8 else im
    return small.convert("L").resize((SIDE, SIDE), Image.Resampling.BOX).tobytes()


def file_thumbnail(path: str | Path) -> bytes | None:
    """The thumbnail of an image file, decoded as `naturalize prepare` reads it (a JPEG at 1/8 scale); None when
    it cannot be read."""
    try:
        with Image.open(path) as im:
            if im.format == "JPEG":
                im.draft(None, (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
            return thumbnail(im)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def same_picture_pairs(thumbs: list[bytes | None], threshold: float = SAME_PICTURE) -> list[tuple[int, int]]:
    """Index pairs (i < j) of `thumbs` whose mean-centred thumbnails correlate at `threshold` or more; None (an
    image with no thumbnail) and flat thumbnails match nothing."""
    known = [i for i, t in enumerate(thumbs) if t is not None and len(t) == SIDE * SIDE]
    if len(known) < 2:
        return []
    v = np.stack([np.frombuffer(thumbs[i], np.uint8) for i in known]).astype(np.float32)  # type: ignore[arg-type]
    v -= v.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    v = np.divide(v, norm, out=np.zeros_like(v), where=norm > 1e-3)
    pairs: list[tuple[int, int]] = []
    for start in range(0, len(known), _BLOCK):  # each block against itself and the rows after it: i < j once
        sims = v[start : start + _BLOCK] @ v[start:].T
        rows, cols = np.nonzero(sims >= threshold)
        pairs += [(known[start + r], known[start + c]) for r, c in zip(rows.tolist(), cols.tolist()) if r < c]
    return sorted(pairs)
