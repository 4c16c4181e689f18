"""The segmentation core without real data: drawn scenes whose cell masks are known exactly
(naturalize.testing.drawnbank.drawn_scene) give the kinds, the cell-free plate and the curation flags."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from naturalize.classes import CLASSES
from naturalize.segment.assign import cells_from_masks
from naturalize.segment.cells import (
    Cell,
    as_rgb,
    box_iou,
    box_of,
    crop_sprite,
    curation_flags,
    finish,
    touches_border,
)
from naturalize.segment.inpaint import union_mask
from naturalize.testing.drawnbank import drawn_scene


@pytest.mark.parametrize("cls", CLASSES)
def test_true_masks_get_their_kinds_and_the_plate_comes_back(cls: str) -> None:
    plate, image, truth = drawn_scene(cls, 0, 0, rbc=6, plt=2)
    cells = cells_from_masks(image, [m for _, m in truth], [0.9] * len(truth))
    assert Counter(c.kind for c in cells) == Counter(k for k, _ in truth)
    assert not any(c.touches_border for c in cells)
    # every cell is usable but the drawn platelets under a real platelet's size (UsableRules.plt_area)
    assert all(c.usable or (c.kind == "PLT" and c.reason == "size" and c.mask.sum() < 150) for c in cells)
    seg = finish(image, cells)
    inside = union_mask(plate.shape[:2], [m for _, m in truth], dilate=0)
    assert np.abs(seg.background.astype(int) - plate)[inside].mean() < 4  # the cells are gone
    assert np.abs(image.astype(int) - plate)[inside].mean() > 30
    assert seg.flags == (("no_wbc",) if cls == "PLT" else ())


def test_plate_and_empty_masks_are_not_cells() -> None:
    _, image, truth = drawn_scene("LY", 1, 0, rbc=2, plt=0)
    h, w = image.shape[:2]
    background = np.zeros((h, w), bool)
    background[5:60, 100:260] = True  # plasma only: no cell there
    masks = [m for _, m in truth] + [np.zeros((h, w), bool), np.ones((h, w), bool), background]
    cells = cells_from_masks(image, masks, [0.9] * len(masks))
    assert sorted(c.kind for c in cells) == ["RBC", "RBC", "WBC"]


def test_a_duplicate_mask_is_kept_once_the_better_scored() -> None:
    _, image, truth = drawn_scene("MO", 0, 0, rbc=1, plt=0)
    (_, wbc), (_, rbc) = truth
    cells = cells_from_masks(image, [rbc, wbc, rbc.copy()], [0.5, 0.9, 0.8])
    assert sorted(c.kind for c in cells) == ["RBC", "WBC"]
    assert [c.score for c in cells if c.kind == "RBC"] == [0.8]


def _cell(kind: str, mask: np.ndarray) -> Cell:
    border = touches_border(mask)
    return Cell(kind, mask, 1.0, border, not border)


def test_curation_flags() -> None:
    m = np.zeros((20, 20), bool)
    inner, edge = m.copy(), m.copy()
    inner[5:10, 5:10] = True
    edge[0:5, 5:10] = True
    assert curation_flags([_cell("WBC", inner), _cell("RBC", edge)]) == ()
    assert curation_flags([_cell("RBC", inner)]) == ("no_wbc",)
    assert curation_flags([_cell("WBC", inner), _cell("WBC", inner)]) == ("multi_wbc",)
    assert curation_flags([_cell("WBC", edge)]) == ("wbc_cut",)


def test_mask_boxes_borders_crops_and_ious() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (12, 15, 3), dtype=np.uint8)
    m = np.zeros((12, 15), bool)
    m[3:7, 4:9] = True
    m[6, 9] = True
    assert box_of(m) == (4, 3, 10, 7)
    with pytest.raises(ValueError, match="empty mask"):
        box_of(np.zeros((3, 3), bool))
    assert not touches_border(m) and touches_border(m, margin=4)
    sprite = crop_sprite(rgb, m)
    assert sprite.shape == (4, 6, 4) and np.array_equal(sprite[:, :, :3], rgb[3:7, 4:10])
    assert np.array_equal(sprite[:, :, 3] == 255, m[3:7, 4:10]) and set(np.unique(sprite[:, :, 3])) == {0, 255}
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    assert box_iou((0, 0, 1, 1), (1, 1, 2, 2)) == 0.0


def test_as_rgb_accepts_gray_rgba_and_float_images() -> None:
    gray = np.array([[0, 128], [255, 7]], np.uint8)
    assert as_rgb(gray).shape == (2, 2, 3) and as_rgb(gray)[1, 0].tolist() == [255, 255, 255]
    rgba = np.dstack([gray, gray, gray, np.zeros_like(gray)])
    assert np.array_equal(as_rgb(rgba), as_rgb(gray))
    assert as_rgb(np.array([[[0.5, 1.0, 0.0]]]))[0, 0].tolist() == [128, 255, 0]
    with pytest.raises(ValueError, match="expected a gray, RGB or RGBA image"):
        as_rgb(np.zeros((2, 2, 2), np.uint8))


def test_union_mask_grows_the_cells_by_the_dilation() -> None:
    m = np.zeros((21, 21), bool)
    m[10, 10] = True
    assert union_mask((21, 21), [m], dilate=0).sum() == 1
    grown = union_mask((21, 21), [m], dilate=3)
    assert grown[10, 13] and not grown[10, 14] and grown.sum() > 20
    assert not union_mask((21, 21), [], dilate=3).any()
