"""A tiny sprite bank of procedurally drawn cells: what compose needs, with no PBC data and no segmenter.

In: how many source images per class, a seed, an output folder. Out: a bank in the documented format
(naturalize/bank.py), written by the product's BankWriter: per source image a drawn background plate,
its centre cell (the class's white cell, or a platelet for PLT), `rbc` red cells and `plt` platelets,
each a tight RGBA crop (alpha = mask, the plate's colour under alpha 0). The cells are drawn with
naturalize.drawn's patches, so their masks are known exactly. Same arguments -> same bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import cv2
import numpy as np

from naturalize.bank import BankWriter, EncodedSprite, ImageEntry
from naturalize.classes import CLASSES
from naturalize.drawn import HEIGHT, WIDTH, draw_background, platelet_patch, rbc_patch, wbc_patch

#: Where the red cells and platelets of a drawn source image go, as fractions of its width and height:
#: apart from each other and from the centre cell, none cut by the border.
RBC_SPOTS = ((0.15, 0.15), (0.85, 0.15), (0.15, 0.85), (0.85, 0.85), (0.5, 0.13), (0.5, 0.87))
PLT_SPOTS = ((0.13, 0.5), (0.87, 0.5))


def _png(rgb_or_rgba: np.ndarray) -> bytes:
    """Lossless PNG bytes of an RGB or RGBA uint8 array."""
    code = cv2.COLOR_RGBA2BGRA if rgb_or_rgba.shape[2] == 4 else cv2.COLOR_RGB2BGR
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb_or_rgba, code))
    assert ok
    return buf.tobytes()


def _sprite(kind: str, plate: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, cx: float, cy: float) -> EncodedSprite:
    """The patch (rgb float, alpha 0..1) centred at (cx, cy) on `plate` -> a tight RGBA crop, alpha = mask."""
    h, w = alpha.shape
    x, y = int(round(cx - w / 2)), int(round(cy - h / 2))
    mask = alpha >= 0.5
    ys, xs = np.nonzero(mask)
    bx0, by0, bx1, by1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    region = plate[y + by0:y + by1, x + bx0:x + bx1].astype(np.float32)
    a = alpha[by0:by1, bx0:bx1, None]
    colour = np.clip(np.rint(region * (1 - a) + rgb[by0:by1, bx0:bx1] * a), 0, 255).astype(np.uint8)
    m = mask[by0:by1, bx0:bx1]
    rgba = np.dstack([colour, m.astype(np.uint8) * 255])
    return EncodedSprite(kind, _png(rgba), x + bx0, y + by0, x + bx1, y + by1, int(m.sum()), 1.0, False)


def drawn_entry(cls: str, index: int, seed: int, rbc: int = 4, plt: int = 1) -> ImageEntry:
    """One drawn source image of class `cls` as the entry a bank stores (pure: depends on the arguments only)."""
    rng = np.random.default_rng([seed, CLASSES.index(cls), index, 0xB4])
    plate = np.clip(np.rint(draw_background(rng)), 0, 255).astype(np.uint8)
    sprites = []
    if cls == "PLT":
        rgb, alpha = platelet_patch(rng, 9.0)
        sprites.append(_sprite("PLT", plate, rgb, alpha, WIDTH / 2, HEIGHT / 2))
    else:
        rgb, alpha, _ = wbc_patch(cls, rng)
        sprites.append(_sprite("WBC", plate, rgb, alpha, WIDTH / 2, HEIGHT / 2))
    for fx, fy in RBC_SPOTS[:rbc]:
        rgb, alpha = rbc_patch(rng, float(rng.uniform(22, 26)))
        sprites.append(_sprite("RBC", plate, rgb, alpha, fx * WIDTH, fy * HEIGHT))
    for fx, fy in PLT_SPOTS[:plt]:
        rgb, alpha = platelet_patch(rng, float(rng.uniform(4, 6)))
        sprites.append(_sprite("PLT", plate, rgb, alpha, fx * WIDTH, fy * HEIGHT))
    stem = f"{cls}_drawn_{index}"
    n = {k: sum(s.kind == k for s in sprites) for k in ("WBC", "RBC", "PLT")}
    return ImageEntry(f"{cls}/{stem}.jpg", cls, stem, WIDTH, HEIGHT, tuple(sprites), _png(plate),
                      n["WBC"], n["RBC"], n["PLT"], (), True)


def make_drawn_bank(out: str | Path, per_class: Mapping[str, int], seed: int = 0, rbc: int = 4, plt: int = 1) -> Path:
    """Write a bank of `per_class[c]` drawn source images of each class c into `out`; returns `out`."""
    out = Path(out)
    writer = BankWriter.open(out, {"backend": "drawn", "parameters": {"seed": seed, "rbc": rbc, "plt": plt},
                                   "input": "naturalize.drawn"})
    for cls, n in per_class.items():
        for i in range(n):
            writer.add(drawn_entry(cls, i, seed, rbc, plt))
    return out
