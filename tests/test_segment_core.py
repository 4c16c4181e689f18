"""The weight-free segmentation core on real PBC sample images (read in place from the shared sample)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from naturalize.segment.assign import assign_masks, cells_from_masks
from naturalize.segment.cells import box_iou, crop_sprite, finish
from naturalize.segment.classical import segment_classical
from naturalize.segment.colour import plate_colour

# images chosen from the OI-PBC boxes: one annotated WBC each (several classes), and one with two WBCs
SINGLE = ["LY_507266", "MY_988893", "EO_724679", "MMY_300719"]
DOUBLE = "BA_248930"
PLATELET = "PLATELET_124466"


def _load(release: Path, stem: str) -> np.ndarray:
    hits = list(release.glob(f"*/{stem}.jpg"))
    if not hits:
        pytest.skip(f"{stem}.jpg is not in this PBC sample")
    return np.asarray(Image.open(hits[0]).convert("RGB"))


def _boxes(boxdir: Path, stem: str, w: int, h: int) -> dict[str, list[tuple[float, float, float, float]]]:
    out: dict[str, list] = {"RBC": [], "WBC": [], "PLT": []}
    for line in (boxdir / f"{stem}.txt").read_text().split("\n"):
        if not line.strip():
            continue
        c, cx, cy, bw, bh = line.split()
        kind = {"10": "RBC", "8": "PLT"}.get(c, "WBC")
        cx, cy, bw, bh = float(cx) * w, float(cy) * h, float(bw) * w, float(bh) * h
        out[kind].append((cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2))
    return out


@pytest.fixture(scope="module")
def single(sample_release, sample_boxes):
    """(stem, rgb, segmentation, annotated boxes) for each single-WBC image."""
    out = []
    for stem in SINGLE:
        rgb = _load(sample_release, stem)
        out.append((stem, rgb, segment_classical(rgb), _boxes(sample_boxes, stem, rgb.shape[1], rgb.shape[0])))
    return out


def test_one_centred_white_cell_matches_its_annotation(single):
    for stem, rgb, seg, boxes in single:
        h, w = rgb.shape[:2]
        wbcs = seg.of_kind("WBC")
        assert len(wbcs) == 1, f"{stem}: {len(wbcs)} white cells"
        x0, y0, x1, y1 = wbcs[0].box
        assert abs((x0 + x1) / 2 - w / 2) < w * 0.15 and abs((y0 + y1) / 2 - h / 2) < h * 0.15, stem
        assert box_iou(wbcs[0].box, boxes["WBC"][0]) >= 0.8, stem
        assert wbcs[0].usable and not wbcs[0].touches_border
        assert seg.flags == (), f"{stem}: {seg.flags}"


def test_usable_red_cells_are_whole_annotated_cells(single):
    for stem, _, seg, boxes in single:
        usable = seg.of_kind("RBC", usable_only=True)
        assert len(usable) >= 4, f"{stem}: only {len(usable)} usable red cells"
        for c in usable:
            assert not c.touches_border
            best = max(box_iou(c.box, b) for b in boxes["RBC"])
            assert best >= 0.6, f"{stem}: usable red cell {c.box} matches no annotated red cell (IoU {best:.2f})"
        # border-cut red cells are found too but never usable
        assert any(c.touches_border and not c.usable for c in seg.of_kind("RBC")), stem


def test_sprites_have_real_alpha(single):
    stem, rgb, seg, _ = single[0]
    for c in [*seg.of_kind("WBC"), *seg.of_kind("RBC", usable_only=True)]:
        rgba = crop_sprite(rgb, c.mask)
        x0, y0, x1, y1 = c.box
        assert rgba.shape == (y1 - y0, x1 - x0, 4) and rgba.dtype == np.uint8
        alpha = rgba[:, :, 3]
        assert set(np.unique(alpha)) == {0, 255}
        assert 0.5 < (alpha == 255).mean() < 0.97  # a round cell in its box: opaque inside, clear corners
        assert alpha[alpha.shape[0] // 2, alpha.shape[1] // 2] == 255
        assert (alpha == 255).sum() == c.area
        np.testing.assert_array_equal(rgba[:, :, :3][alpha == 255], rgb[y0:y1, x0:x1][c.mask[y0:y1, x0:x1]])


def test_background_has_no_cells_left(single):
    for stem, rgb, seg, _ in single:
        bg = seg.background
        assert bg.shape == rgb.shape and bg.dtype == np.uint8
        plate = plate_colour(rgb)
        union = np.zeros(rgb.shape[:2], bool)
        for c in seg.cells:
            union |= c.mask
        before = np.abs(rgb[union].astype(float) - plate).sum(axis=1)
        after = np.abs(bg[union].astype(float) - plate).sum(axis=1)
        # cell pixels differ strongly from the plate before; afterwards they are plate-coloured
        assert np.median(before) > 60, stem
        assert np.median(after) < 15 and np.percentile(after, 95) < 40, f"{stem}: {np.median(after):.1f}"
        # the purple nucleus is gone
        wbc = seg.of_kind("WBC")[0].mask
        assert (bg[wbc][:, 2].astype(int) - bg[wbc][:, 1].astype(int)).max() < 40, stem
        # most plate pixels away from the cells are left exactly as they were
        same = (bg[~union] == rgb[~union]).all(axis=1).mean()
        assert same > 0.5, stem


def test_two_white_cells_are_flagged(sample_release, sample_boxes):
    rgb = _load(sample_release, DOUBLE)
    boxes = _boxes(sample_boxes, DOUBLE, rgb.shape[1], rgb.shape[0])
    assert len(boxes["WBC"]) == 2
    seg = segment_classical(rgb)
    assert "multi_wbc" in seg.flags
    wbcs = seg.of_kind("WBC")
    assert len(wbcs) == 2
    for b in boxes["WBC"]:
        assert max(box_iou(c.box, b) for c in wbcs) >= 0.7


def test_platelet_image_has_no_white_cell(sample_release):
    seg = segment_classical(_load(sample_release, PLATELET))
    assert "no_wbc" in seg.flags
    assert any(c.usable for c in seg.of_kind("PLT"))


def test_gray_and_rgba_inputs_are_accepted(single):
    _, rgb, seg, _ = single[0]
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    seg_rgba = segment_classical(rgba)
    assert [c.box for c in seg_rgba.cells] == [c.box for c in seg.cells]
    np.testing.assert_array_equal(seg_rgba.background, seg.background)
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    seg_gray = segment_classical(gray)
    assert seg_gray.background.shape == rgb.shape and seg_gray.background.dtype == np.uint8
    assert all(c.mask.shape == gray.shape for c in seg_gray.cells)


def test_masks_from_any_generator_get_kinds(single):
    """cells_from_masks (the SAM path) labels masks by colour and size, drops plate and duplicate masks."""
    _, rgb, seg, _ = single[0]
    wbc = seg.of_kind("WBC")[0]
    rbcs = seg.of_kind("RBC", usable_only=True)
    plate = np.zeros(rgb.shape[:2], bool)
    plate[:40, :40] = True
    plate &= ~np.logical_or.reduce([c.mask for c in seg.cells])
    masks = [wbc.mask, *[c.mask for c in rbcs], rbcs[0].mask.copy(), plate, np.zeros_like(plate)]
    cells, dropped = assign_masks(rgb, masks, [0.9] * len(masks))
    kinds = sorted(c.kind for c in cells)
    assert kinds == sorted(["WBC", *["RBC"] * len(rbcs)])  # duplicate, plate and empty masks dropped
    assert dropped == {"empty": 1, "background": 1, "duplicate": 1}  # each drop counted, once, under its reason
    assert [c.kind for c in cells_from_masks(rgb, masks, [0.9] * len(masks))] == [c.kind for c in cells]
    assert sum(c.usable for c in cells if c.kind == "RBC") >= len(rbcs) - 1
    out = finish(rgb, cells)
    assert out.flags == () and out.background.shape == rgb.shape


def test_fill_holes_is_scipys_binary_fill_holes(single):
    """The flood-fill helper gives scipy's result: on real cell, stain and plate masks (pale red-cell centres,
    nuclei, the plate around cells touching the border) and on holes that touch the outside only diagonally."""
    from scipy import ndimage as ndi

    from naturalize.segment.cells import fill_holes
    from naturalize.segment.colour import colour_maps

    masks = []
    for _, rgb, _, _ in single:
        fg, stain, dist, _ = colour_maps(rgb)
        masks += [dist > 18.0, ~fg, stain > 45.0, stain > 20.0, fg[40:200, 13:97]]
    ring = np.zeros((9, 9), bool)
    ring[2:7, 2:7] = True
    ring[3:6, 3:6] = False
    ring[2, 2] = False  # the hole meets the outside at a corner only: still a hole (4-connected background)
    masks += [ring, np.ones((4, 5), bool), np.zeros((4, 5), bool)]
    masks.append(np.where(ring, 2, 0).astype(np.uint8))  # any nonzero value is mask
    for m in masks:
        assert (fill_holes(m) == ndi.binary_fill_holes(m)).all()
    assert fill_holes(ring)[4, 4] and not fill_holes(ring)[2, 2]


def test_median_u8_is_numpys_median(single):
    from naturalize.segment.colour import median_u8

    rng = np.random.default_rng(0)
    arrays = [rgb[::3, ::5, i].ravel() for _, rgb, _, _ in single for i in range(3)]
    arrays += [rng.integers(0, 256, n).astype(np.uint8) for n in (1, 2, 3, 10, 11, 1000)]
    arrays += [np.array([0, 255], np.uint8), np.array([7, 7, 7, 9], np.uint8)]
    for a in arrays:
        assert median_u8(a) == float(np.median(a))
