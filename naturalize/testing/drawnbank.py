"""A tiny sprite bank of procedurally drawn cells: what compose needs, with no PBC data and no segmenter.

In: how many source images per class, a seed, an output folder. Out: a bank in the documented format
(naturalize/bank/), written by the product's BankWriter: per source image a drawn background plate,
its centre cell (the class's white cell, or a platelet for PLT), `rbc` red cells and `plt` platelets,
each a tight RGBA crop (alpha = mask, the plate's colour under alpha 0). The cells are drawn with
naturalize.drawn's patches onto the plate, apart from each other, so their masks are known exactly
(`drawn_scene`: also a ground truth for segmentation). Same arguments -> same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np

from naturalize.bank import BankWriter, EncodedSprite, ImageEntry
from naturalize.classes import CLASSES
from naturalize.drawn import HEIGHT, WIDTH, draw_background, platelet_patch, rbc_patch, wbc_patch
from naturalize.segment.cells import box_of, crop_sprite

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


def _paste(image: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, cx: float, cy: float) -> np.ndarray:
    """Blend the patch (rgb float, alpha 0..1) centred at (cx, cy) into `image` (float, in place); returns
    the cell's bool mask (alpha >= 0.5) in image coordinates. The patch must lie inside the image."""
    h, w = alpha.shape
    x, y = int(round(cx - w / 2)), int(round(cy - h / 2))
    region = image[y : y + h, x : x + w]
    region *= 1 - alpha[:, :, None]
    region += alpha[:, :, None] * rgb
    mask = np.zeros(image.shape[:2], bool)
    mask[y : y + h, x : x + w] = alpha >= 0.5
    return mask


def drawn_scene(
    cls: str, index: int, seed: int, rbc: int = 4, plt: int = 1
) -> tuple[np.ndarray, np.ndarray, list[tuple[str, np.ndarray]]]:
    """One drawn source image of class `cls`: (plate RGB uint8, image RGB uint8 = the plate with the cells,
    [(kind, bool mask)] centre cell first). Pure: depends on the arguments only."""
    rng = np.random.default_rng([seed, CLASSES.index(cls), index, 0xB4])
    plate = draw_background(rng)
    image = plate.copy()
    if cls == "PLT":
        rgb, alpha = platelet_patch(rng, 9.0)
        cells = [("PLT", _paste(image, rgb, alpha, WIDTH / 2, HEIGHT / 2))]
    else:
        rgb, alpha, _ = wbc_patch(cls, rng)
        cells = [("WBC", _paste(image, rgb, alpha, WIDTH / 2, HEIGHT / 2))]
    for fx, fy in RBC_SPOTS[:rbc]:
        rgb, alpha = rbc_patch(rng, float(rng.uniform(22, 26)))
        cells.append(("RBC", _paste(image, rgb, alpha, fx * WIDTH, fy * HEIGHT)))
    for fx, fy in PLT_SPOTS[:plt]:
        rgb, alpha = platelet_patch(rng, float(rng.uniform(4, 6)))
        cells.append(("PLT", _paste(image, rgb, alpha, fx * WIDTH, fy * HEIGHT)))
    as_uint8 = lambda a: np.clip(np.rint(a), 0, 255).astype(np.uint8)  # noqa: E731
    return as_uint8(plate), as_uint8(image), cells


def drawn_entry(cls: str, index: int, seed: int, rbc: int = 4, plt: int = 1) -> ImageEntry:
    """drawn_scene's image as the entry a bank stores: a sprite per cell (segment.cells.crop_sprite: colour
    from the image, alpha = mask) and the plate as its cell-free background."""
    plate, image, cells = drawn_scene(cls, index, seed, rbc, plt)
    sprites = []
    for kind, mask in cells:
        rgba = crop_sprite(image, mask)
        sprites.append(EncodedSprite(kind, _png(rgba), *box_of(mask), int(mask.sum()), 1.0, False))
    stem = f"{cls}_drawn_{index}"
    n = {k: sum(kind == k for kind, _ in cells) for k in ("WBC", "RBC", "PLT")}
    return ImageEntry(
        f"{cls}/{stem}.jpg",
        cls,
        stem,
        WIDTH,
        HEIGHT,
        tuple(sprites),
        _png(plate),
        n["WBC"],
        n["RBC"],
        n["PLT"],
        (),
        True,
    )


def make_drawn_bank(out: str | Path, per_class: Mapping[str, int], seed: int = 0, rbc: int = 4, plt: int = 1) -> Path:
    """Write a bank of `per_class[c]` drawn source images of each class c into `out`; returns `out`."""
    out = Path(out)
    writer = BankWriter.open(
        out, {"backend": "drawn", "parameters": {"seed": seed, "rbc": rbc, "plt": plt}, "input": "naturalize.drawn"}
    )
    for cls, n in per_class.items():
        for i in range(n):
            writer.add(drawn_entry(cls, i, seed, rbc, plt))
    return out
