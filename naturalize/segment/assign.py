"""Give cell masks a kind (RBC / WBC / PLT), a score and `usable` from colour, size and shape.

In: the RGB image and masks (from the classical watershed or from any mask generator such as SAM).
Out: `Cell` values. `usable` is strict on purpose: a red cell is usable only when it is a whole,
single, round-ish cell of typical size, away from the border, other cells and platelets, because
the compositor pastes these sprites as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage as ndi

from naturalize.segment.cells import Cell, as_rgb, box_of, box_touches_border, fill_holes, touches_border, with_box
from naturalize.segment.colour import REF_SIZE, StainParams, colour_maps, plate_colour


@dataclass(frozen=True)
class UsableRules:
    """Shape rules for a usable red cell (relative to the image's typical red-cell area)."""

    min_rel_area: float = 0.75
    max_rel_area: float = 1.5
    min_solidity: float = 0.93
    max_aspect: float = 1.5
    max_contact: float = 0.5  # fraction of the outline touching another red cell
    max_wbc_contact: float = 0.5  # fraction of the outline touching a white cell
    min_ellipse_iou: float = 0.88  # overlap of the mask with its fitted ellipse (fragments fit badly)
    max_stain: float = 30.0  # mean blue-minus-green above this is no red cell
    plt_area: tuple[int, int] = (150, 6000)  # a platelet is ~2-3 µm: ~150+ px at PBC scale
    plt_min_solidity: float = 0.8
    plt_max_aspect: float = 2.0
    plt_max_green: float = 0.6  # 25th percentile of green / plate green: pale lilac specks are no platelet


@dataclass(frozen=True)
class MaskRules:
    """How `cells_from_masks` gives a kind to a mask from any generator (SAM): colour and size at ~360 px."""

    stain: StainParams = StainParams()
    wbc_min_area: int = 1200  # a white cell holds at least this many purple (nuclear) pixels ...
    wbc_big_area: int = 6000  # ... and is this big, or its nucleus is dark: 25th percentile of
    nucleus_dark: float = 0.136  # green / plate green at most this (else a large platelet)
    max_area_frac: float = 0.25  # masks covering more of the image are the plate
    min_fg_frac: float = 0.6  # masks with less cell colour than this are plate
    dup_iou: float = 0.7  # masks overlapping a better one this much (IoU) ...
    dup_cover: float = 0.8  # ... or covered this much by it are duplicates


@dataclass
class _Region:
    mask: np.ndarray  # bool crop
    sl: tuple[slice, slice]
    area: int
    solidity: float
    aspect: float
    contact: float
    wbc_contact: float
    ellipse_iou: float
    stain: float
    border: bool


def _pad_slice(sl: tuple[slice, slice], shape: tuple[int, int], pad: int) -> tuple[slice, slice]:
    return (
        slice(max(0, sl[0].start - pad), min(shape[0], sl[0].stop + pad)),
        slice(max(0, sl[1].start - pad), min(shape[1], sl[1].stop + pad)),
    )


def shape_features(mask: np.ndarray) -> tuple[float, float, float]:
    """(solidity, aspect ratio, IoU with the fitted ellipse) of a bool crop."""
    m8 = mask.astype(np.uint8)
    cnts, _ = cv2.findContours(m8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not cnts:
        return 0.0, 99.0, 0.0
    c = max(cnts, key=cv2.contourArea)
    hull = cv2.contourArea(cv2.convexHull(c))
    area = int(np.count_nonzero(mask))
    solidity = float(area) / hull if hull > 0 else 0.0
    if len(c) < 5:
        return min(1.0, solidity), 99.0, 0.0
    (_, _), (w, h), _ = cv2.minAreaRect(c)
    aspect = max(w, h) / max(1e-6, min(w, h))
    ell = np.zeros_like(m8)
    cv2.ellipse(ell, cv2.fitEllipse(c), 1, -1)
    inter = int(np.count_nonzero(ell & m8))
    union = area + int(np.count_nonzero(ell)) - inter
    return min(1.0, solidity), float(aspect), inter / union if union else 0.0


def _region(crop_mask: np.ndarray, others: np.ndarray, wbc: np.ndarray, stain: np.ndarray, sl, border: bool) -> _Region:
    """Features of one candidate (bool crop); `others` / `wbc`: other cells' / white cells' pixels in the crop."""
    ring = cv2.dilate(crop_mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~crop_mask
    n_ring = max(1, int(np.count_nonzero(ring)))
    touch_wbc = float(np.count_nonzero(ring & wbc)) / n_ring
    contact = float(np.count_nonzero(ring & others & ~wbc)) / n_ring
    solidity, aspect, ell = shape_features(crop_mask)
    return _Region(
        crop_mask,
        sl,
        int(np.count_nonzero(crop_mask)),
        solidity,
        aspect,
        contact,
        touch_wbc,
        ell,
        float(stain[crop_mask].mean()) if crop_mask.any() else 0.0,
        border,
    )


def _full(shape: tuple[int, int], r: _Region) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[r.sl] = r.mask
    return m


def _placed(crop: np.ndarray, sl: tuple[slice, slice]) -> tuple[int, int, int, int]:
    """The box (x0, y0, x1, y1) in the image of a non-empty bool crop taken at window `sl`."""
    x0, y0, x1, y1 = box_of(crop)
    return x0 + sl[1].start, y0 + sl[0].start, x1 + sl[1].start, y1 + sl[0].start


def _rbc_reference_area(regions: list[_Region], rules: UsableRules) -> float:
    """Typical red-cell area of the image: median over clean-looking candidates."""
    clean = [
        r.area
        for r in regions
        if not r.border and r.solidity >= rules.min_solidity and r.contact < 0.5 and r.stain < rules.max_stain
    ]
    if len(clean) < 3:
        clean = [r.area for r in regions if not r.border] or [r.area for r in regions] or [0]
    return float(np.median(clean))


def _rbc_cells(
    shape,
    regions: list[_Region],
    plt_union: np.ndarray,
    rules: UsableRules,
    ref_area: float | None = None,
    grow: np.ndarray | None = None,
    rim_px: int = 0,
) -> list[Cell]:
    ref = ref_area if ref_area is not None else _rbc_reference_area(regions, rules)
    cells = []
    for r in regions:
        rel = r.area / ref if ref > 0 else 0.0
        on_plt = bool((plt_union[r.sl] & r.mask).any())
        ok_shape = r.solidity >= rules.min_solidity and r.aspect <= rules.max_aspect
        ok_size = rules.min_rel_area <= rel <= rules.max_rel_area
        checks = (
            ("border", not r.border),
            ("shape", ok_shape),
            ("size", ok_size),
            ("contact", r.contact <= rules.max_contact),
            ("on_platelet", not on_plt),
            ("stain", r.stain <= rules.max_stain),
            ("wbc_contact", r.wbc_contact <= rules.max_wbc_contact),
            ("fragment", r.ellipse_iou >= rules.min_ellipse_iou),
        )
        reason = next((name for name, ok in checks if not ok), "")
        usable = not reason
        score = float(min(max(r.solidity, 0.0), 1.0) * (1 - min(1.0, r.contact)) * np.exp(-abs(np.log(max(rel, 1e-3)))))
        full = _full(shape, r)
        if rim_px > 0 and grow is not None:
            k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * rim_px + 1, 2 * rim_px + 1))
            full |= cv2.dilate(full.astype(np.uint8), k).astype(bool) & grow
            cells.append(Cell("RBC", full, round(score, 4), r.border or touches_border(full), usable, reason))
            continue
        box = _placed(r.mask, r.sl)  # the mask is the crop's: its box is known without scanning the image
        border = r.border or box_touches_border(box, shape)
        cells.append(with_box(Cell("RBC", full, round(score, 4), border, usable, reason), box))
    return cells


def _plt_cells(
    shape,
    plts: list[np.ndarray],
    rules: UsableRules,
    wbc: np.ndarray | None = None,
    green: np.ndarray | None = None,
    grow: bool = True,
) -> list[Cell]:
    """Platelets from purple blobs: usable when of platelet size, compact, dark enough (`green`: green
    channel / plate green), off the border and clear of white cells. `grow`: each blob is grown by 1 px first
    (the classical backend's stain blobs are the platelet's core; a mask generator's masks are whole)."""
    s2 = (min(shape) / REF_SIZE) ** 2
    cells = []
    k = np.ones((3, 3), np.uint8)
    near_wbc = (
        cv2.dilate(wbc.astype(np.uint8), np.ones((13, 13), np.uint8)).astype(bool)
        if wbc is not None and wbc.any()
        else np.zeros(shape, bool)
    )
    for m in plts:
        full = cv2.dilate(m.astype(np.uint8), k).astype(bool) if grow else m
        border = touches_border(full)
        area = int(full.sum())
        solidity, aspect, _ = shape_features(full)
        dark = green is None or float(np.percentile(green[full], 25)) <= rules.plt_max_green
        checks = (
            ("border", not border),
            ("size", rules.plt_area[0] * s2 <= area <= rules.plt_area[1] * s2),
            ("shape", solidity >= rules.plt_min_solidity and aspect <= rules.plt_max_aspect),
            ("pale", dark),
            ("wbc_contact", not (full & near_wbc).any()),
        )
        reason = next((name for name, ok in checks if not ok), "")
        score = solidity if reason in ("", "border") else 0.5 * solidity
        cells.append(Cell("PLT", full, round(score, 4), border, not reason, reason))
    return cells


def judge_regions(
    rgb: np.ndarray,
    labels: np.ndarray,
    n: int,
    n_wbc: int,
    plts: list[np.ndarray],
    stain: np.ndarray,
    rim_px: int = 2,
    rules: UsableRules | None = None,
    plate: np.ndarray | None = None,
) -> list[Cell]:
    """Cells from a watershed label image: labels 1..n_wbc are white cells, n_wbc+1..n red-cell
    candidates (0 = plate); `plts` are platelet masks; `stain` is the blue-minus-green map; `plate`: the image's
    plate colour when already known."""
    rules = rules or UsableRules()
    shape = labels.shape
    cells: list[Cell] = []
    regions: list[_Region] = []
    objs = ndi.find_objects(labels, max_label=n)
    for i, sl in enumerate(objs, start=1):
        if sl is None:
            continue
        psl = _pad_slice(sl, shape, 3)
        lab = labels[psl]
        m = lab == i
        if i <= n_wbc:
            full = np.zeros(shape, bool)
            full[psl] = filled = fill_holes(m)
            box = _placed(filled, psl)
            border = box_touches_border(box, shape)
            solidity = shape_features(m)[0]
            cells.append(
                with_box(Cell("WBC", full, round(solidity, 4), border, not border, "border" if border else ""), box)
            )
            continue
        border = sl[0].start == 0 or sl[1].start == 0 or sl[0].stop == shape[0] or sl[1].stop == shape[1]
        regions.append(_region(m, (lab > 0) & ~m, (lab > 0) & (lab <= n_wbc), stain[psl], psl, border))
    plt_union = np.zeros(shape, bool)
    for m in plts:
        plt_union |= m
    cells += _rbc_cells(shape, regions, plt_union, rules, grow=labels == 0, rim_px=rim_px)
    green = rgb[:, :, 1] / max(1.0, float((plate_colour(rgb) if plate is None else plate)[1]))
    cells += _plt_cells(shape, plts, rules, (labels > 0) & (labels <= n_wbc), green)
    return cells


#: Why `assign_masks` drops a mask it is given, in the order they are tried: empty (or not the image's size),
#: background (more than max_area_frac of the image, or mostly plate), duplicate (a near-duplicate of a better-scored
#: mask; of two white-cell masks the larger stays).
ASSIGN_DROP_REASONS: tuple[str, ...] = ("empty", "background", "duplicate")


def cells_from_masks(
    rgb: np.ndarray,
    masks: list[np.ndarray],
    scores: list[float],
    rules: UsableRules | None = None,
    kinds: MaskRules = MaskRules(),
) -> list[Cell]:
    """The cells of `assign_masks` (without its counts of dropped masks)."""
    return assign_masks(rgb, masks, scores, rules, kinds)[0]


def assign_masks(
    rgb: np.ndarray,
    masks: list[np.ndarray],
    scores: list[float],
    rules: UsableRules | None = None,
    kinds: MaskRules = MaskRules(),
) -> tuple[list[Cell], dict[str, int]]:
    """Kinds for arbitrary masks (e.g. SAM's) -> (cells, masks dropped per ASSIGN_DROP_REASONS; cells + dropped =
    masks): plate-coloured or huge masks are dropped as background, near-duplicates of a better-scored mask are
    dropped, purple masks become WBC (large) or PLT (small), the rest RBC; `usable` follows the same rules as the
    classical backend."""
    rules = rules or UsableRules()
    dropped = dict.fromkeys(ASSIGN_DROP_REASONS, 0)
    p = kinds
    rgb = as_rgb(rgb)
    shape = rgb.shape[:2]
    s2 = (min(shape) / p.stain.ref_size) ** 2
    fg, stain, _, plate = colour_maps(rgb, p.stain)
    purple = stain > p.stain.purple_delta
    green = rgb[:, :, 1] / max(1.0, float(plate[1]))
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    kept: list[tuple[str, np.ndarray, float]] = []
    for j in order:
        m = np.asarray(masks[j]).astype(bool)
        if m.shape != shape or not m.any():
            dropped["empty"] += 1
            continue
        area = int(m.sum())
        if area > p.max_area_frac * m.size or (m & fg).sum() < p.min_fg_frac * area:
            dropped["background"] += 1  # background or plate-dominated mask
            continue
        n_purple = int((m & purple).sum())
        if n_purple >= p.wbc_min_area * s2 and (
            area >= p.wbc_big_area * s2 or np.percentile(green[m & purple], 25) <= p.nucleus_dark
        ):
            kind = "WBC"  # big, or small with a dark nucleus (a small light-purple body is a large platelet)
        elif n_purple >= 0.3 * area and area <= rules.plt_area[1] * s2:
            kind = "PLT"
        else:
            kind = "RBC"
        dup = False
        for i, (k2, m2, _) in enumerate(kept):
            inter = int((m & m2).sum())
            if inter == 0:
                continue
            if inter / float(area + m2.sum() - inter) > p.dup_iou or inter > p.dup_cover * min(area, m2.sum()):
                if kind == "WBC" and k2 == "WBC" and area > m2.sum():
                    kept[i] = (kind, m, float(scores[j]))  # prefer the whole white cell over its nucleus
                dup = True
                dropped["duplicate"] += 1
                break
        if not dup:
            kept.append((kind, m, float(scores[j])))
    cells: list[Cell] = []
    union = np.zeros(shape, bool)
    for _, m, _ in kept:
        union |= m
    plts = [m for k, m, _ in kept if k == "PLT"]
    plt_union = np.zeros(shape, bool)
    for m in plts:
        plt_union |= m
    regions, rbc_scores = [], []
    wbc_union = np.zeros(shape, bool)
    for k, m, _ in kept:
        if k == "WBC":
            wbc_union |= m
    for k, m, sc in kept:
        if k == "WBC":
            border = touches_border(m)
            cells.append(Cell(k, m, round(sc, 4), border, not border, "border" if border else ""))
        elif k == "RBC":
            sl = _pad_slice(ndi.find_objects(m.astype(np.uint8))[0], shape, 3)
            others = union[sl] & ~m[sl]
            border = touches_border(m)
            regions.append(_region(m[sl], others, wbc_union[sl], stain[sl], sl, border))
            rbc_scores.append(sc)
    # platelets pass the classical backend's platelet rules (size, shape, dark stain, clear of white cells)
    plt_cells = _plt_cells(shape, plts, rules, wbc_union, green, grow=False)
    for c, sc in zip(plt_cells, [sc for k, _, sc in kept if k == "PLT"]):
        c.score = round(float(sc), 4)
    rbcs = _rbc_cells(shape, regions, plt_union, rules)
    for c, sc in zip(rbcs, rbc_scores):
        c.score = round(float(sc), 4)
    return cells + plt_cells + rbcs, dropped
