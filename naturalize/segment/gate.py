"""The sprite quality gate: every cell a backend found gets a quality score (0..1) and a reason.

In: the RGB image, its `Segmentation` (any backend) and the image's fine class. Out: one `Verdict`
per cell, in the order of `seg.cells`. Reason "ok" means the sprite may be composited; anything else
says why not (see REASONS). Rules, first match wins:

  image    tiny_image / blank_image / noise_image: the whole image gives nothing
           grey_image: an unstained (grayscale) image gives no sprite and no plate (a grey plate or red cell
           in a stained composite would be wrong), but stays in the dataset as a real image (keep=1)
           no_wbc_image: no white cell found in a white-cell image (only PLT images may have none)
  WBC      multi_wbc (which cell is the labelled one is unknown), unlabelled (a white cell in a PLT image),
           shape (its mask fills less than wbc_min_solidity of its convex hull: it lost pale cytoplasm or took
           in part of a neighbour, so it would show a bitten or lumpy cell)
  RBC/PLT  nucleated: holds dark nuclear stain (an erythroblast or a white cell is never an RBC/PLT sprite)
  any      the backend's own reason (border, shape, size, contact, fragment, stain, pale, ...)
  RBC      with a shipped outline model (segment/outline.py), RBCs the backend kept or rejected only for
           shape / size / fragment pass when the model's outline probability is >= rbc_min_outline, else
           keep the backend's reason ("outline" for ones the backend kept)

Quality = the backend's score (shape, size against the image's norm, contact) times a colour term
(1 for no nuclear stain on an RBC/PLT, falling to 0 at the nucleated limit), times the outline
probability for the RBCs the model decides; a white cell's, times its mask's solidity.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from naturalize.segment.cells import Cell, Segmentation, solidity
from naturalize.segment.colour import REF_SIZE, plate_colour

#: Image-level reasons (every cell of the image gets it).
IMAGE_REASONS: tuple[str, ...] = ("tiny_image", "blank_image", "noise_image", "grey_image", "no_wbc_image")
#: Image-level reasons that also curate the image out of the dataset (keep=0): it holds no usable cell at all.
UNFIT_REASONS: tuple[str, ...] = ("tiny_image", "blank_image", "noise_image")
#: Every reason a sprite can carry; "ok" passes.
REASONS: tuple[str, ...] = (
    "ok",
    *IMAGE_REASONS,
    "multi_wbc",
    "unlabelled",
    "nucleated",
    "border",
    "shape",
    "size",
    "contact",
    "on_platelet",
    "stain",
    "wbc_contact",
    "fragment",
    "pale",
    "outline",
    "unusable",
)

#: Reasons that mean "a nucleated cell other than the image's one white cell": an image holding such a cell
#: must not lend its scene to a composite (compose --scene transplant), or the composite shows two.
NUCLEATED_REASONS: tuple[str, ...] = ("multi_wbc", "unlabelled", "nucleated")
#: Reasons that mean a white cell's mask is wrong: inpainting it would leave part of the cell, so its image must
#: lend neither a plate nor a transplant scene to a composite.
BAD_MASK_REASONS: tuple[str, ...] = ("shape",)


@dataclass(frozen=True)
class GateRules:
    """Thresholds of the gate; pixel counts are for ~360 px PBC crops and scale with the image."""

    min_side: int = 64  # images with a shorter side give nothing (tiny_image)
    min_std: float = 4.0  # grey-level standard deviation below this: blank_image
    max_grain: float = 2.0  # median |grey - its Gaussian blur (sigma 1)| above this: noise_image
    # (real PBC crops: 0.2-0.8, Gaussian noise of std 8: 2.7)
    min_chroma: float = 4.0  # mean max(R,G,B) - min(R,G,B) below this: grey_image (a grayscale JPEG: 0;
    # every one of the shared sample's 3,525 stained crops: 18.1 and more)
    nucleus_purple: float = 45.0  # nuclear pixel: blue minus green above this ...
    nucleus_dark: float = 0.25  # ... and green / plate green below this (tuning half: every erythroblast
    # nucleus has >= 1,480 such pixels, 99 % of platelets < 1,260)
    rbc_max_nucleus: int = 60  # an RBC with this many nuclear pixels (at 360 px) is nucleated
    plt_max_nucleus: int = 1200  # a PLT with this many nuclear pixels is a nucleus, not a platelet
    rbc_min_outline: float = 0.88  # RBCs the learned outline model (segment/outline.py) gives at least this
    # probability of a right outline pass, the others do not (0: hand rules only;
    # 0.88: 97.9 % precision, 4.33 per image on a held-out tuning sub-half)
    rbc_learned: tuple[str, ...] = ("", "shape", "size", "fragment")  # backend reasons the model decides
    wbc_min_solidity: float = 0.90  # a white cell whose mask fills less of its convex hull: "shape" (tuning
    # half: 24 of the 1,416 white cells the gate passed, PMY 9 of 129; by eye every one a bitten, ragged or
    # lumpy mask; 1 % of those cells lie below 0.87, 5 % below 0.95)
    ref_size: int = REF_SIZE


@dataclass(frozen=True)
class Verdict:
    """Quality (0..1, higher is better) and reason ("ok" or one of REASONS) of one cell."""

    quality: float
    reason: str


def image_reason(rgb: np.ndarray, rules: GateRules = GateRules()) -> str:
    """'' for an image that may give sprites, else tiny_image / blank_image / noise_image / grey_image."""
    h, w = rgb.shape[:2]
    if min(h, w) < rules.min_side:
        return "tiny_image"
    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    if float(cv2.meanStdDev(grey)[1][0, 0]) < rules.min_std:
        return "blank_image"
    g = grey.astype(np.float32)
    grain = float(np.median(np.abs(g[::2, ::2] - cv2.GaussianBlur(g, (0, 0), 1.0)[::2, ::2])))
    if grain > rules.max_grain:
        return "noise_image"
    if chroma(rgb) < rules.min_chroma:
        return "grey_image"
    return ""


def chroma(rgb: np.ndarray) -> float:
    """Mean over pixels of max(R, G, B) - min(R, G, B): 0 for a grayscale image, 18+ for stained PBC crops."""
    r, g, b = (rgb[::2, ::2, i] for i in range(3))
    return float(np.maximum(np.maximum(r, g), b).mean()) - float(np.minimum(np.minimum(r, g), b).mean())


def nuclear_map(rgb: np.ndarray, rules: GateRules = GateRules(), plate: np.ndarray | None = None) -> np.ndarray:
    """Bool HxW: dark purple pixels (nuclear chromatin) against the image's plate colour (`plate` when known).
    Integer blue minus green, and "green / plate green is dark" looked up per green level (the same float32
    quotient for each of the 256 levels as for each pixel)."""
    g, b = rgb[:, :, 1], rgb[:, :, 2]
    levels = np.arange(256, dtype=np.float32) / max(1.0, float((plate_colour(rgb) if plate is None else plate)[1]))
    return ((b.astype(np.int16) - g) > rules.nucleus_purple) & (levels < rules.nucleus_dark)[g]


def judge(rgb: np.ndarray, seg: Segmentation, label: str, rules: GateRules = GateRules()) -> list[Verdict]:
    """One Verdict per cell of `seg` (see the module doc); `label` is the source image's fine class."""
    from naturalize.classes import WBC_CLASSES

    whole = image_reason(rgb, rules)
    n_wbc = sum(c.kind == "WBC" for c in seg.cells)
    if not whole and n_wbc == 0 and label != "PLT":
        whole = "no_wbc_image"
    plate = plate_colour(rgb) if not whole else None
    nuclear = nuclear_map(rgb, rules, plate) if not whole else None
    s2 = (min(rgb.shape[:2]) / rules.ref_size) ** 2
    out = []
    for c in seg.cells:
        quality = float(np.clip(c.score, 0.0, 1.0))
        reason = whole
        if nuclear is not None and c.kind in ("RBC", "PLT"):
            limit = (rules.rbc_max_nucleus if c.kind == "RBC" else rules.plt_max_nucleus) * s2
            n_nuc = _count_in(nuclear, c)
            quality *= max(0.0, 1.0 - n_nuc / max(1.0, limit))
            if n_nuc >= limit:
                reason = "nucleated"
        if c.kind == "WBC":
            x0, y0, x1, y1 = c.box
            full = solidity(c.mask[y0:y1, x0:x1])
            quality *= full
            if not reason:
                reason = "unlabelled" if label not in WBC_CLASSES else "multi_wbc" if n_wbc > 1 else ""
            if not reason and c.usable and full < rules.wbc_min_solidity:
                reason = "shape"
        reason = reason or ("" if c.usable else c.reason or "unusable")
        out.append(Verdict(round(quality, 4), reason or "ok"))
    if rules.rbc_min_outline > 0:
        out = _learned_rbc(rgb, seg, out, rules, plate)
    return out


def learned_pool(seg: Segmentation, verdicts: list[Verdict], rules: GateRules = GateRules()) -> list[int]:
    """Indices of the RBCs the outline model decides: kept by the hand rules, or rejected only by the backend
    for one of `rules.rbc_learned` (never nucleated ones, never on rejected images)."""
    return [
        i
        for i, (c, v) in enumerate(zip(seg.cells, verdicts))
        if c.kind == "RBC"
        and ("" if c.usable else c.reason or "unusable") in rules.rbc_learned
        and v.reason in ("ok", c.reason or "unusable")
    ]


def _learned_rbc(
    rgb: np.ndarray, seg: Segmentation, out: list[Verdict], rules: GateRules, plate: np.ndarray | None = None
) -> list[Verdict]:
    """RBCs rejected only by the backend's shape/size/fragment rules, or kept, are decided by the learned
    outline model instead: ok at probability >= rules.rbc_min_outline, else the backend's reason or "outline"."""
    from naturalize.segment.outline import rbc_outline_prob

    out = list(out)
    for i, p in rbc_outline_prob(rgb, seg, learned_pool(seg, out, rules), plate=plate).items():
        reason = "ok" if p >= rules.rbc_min_outline else seg.cells[i].reason or "outline"
        out[i] = Verdict(round(out[i].quality * p, 4), reason)
    return out


def _count_in(mask: np.ndarray, cell: Cell) -> int:
    """Pixels of `mask` inside the cell (on the cell's box only)."""
    x0, y0, x1, y1 = cell.box
    return int(np.count_nonzero(mask[y0:y1, x0:x1] & cell.mask[y0:y1, x0:x1]))
