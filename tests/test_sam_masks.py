"""What the SAM backend makes of its masks (no model needed: masks in, `Segmentation` out), on drawn scenes whose
cell masks are known exactly: the plate is cell-free even where SAM missed a cell, and SAM's platelet masks pass
the same platelet rules as the classical backend's."""

from __future__ import annotations

import numpy as np

from naturalize.segment.assign import cells_from_masks
from naturalize.segment.inpaint import union_mask
from naturalize.segment.sam import segmentation_of
from naturalize.testing.drawnbank import drawn_scene


def test_a_cell_sam_missed_does_not_stay_on_the_plate() -> None:
    plate, image, truth = drawn_scene("EO", 0, 0, rbc=4, plt=1)
    (_, wbc), *small = truth
    seg = segmentation_of(image, [m for _, m in small], [0.95] * len(small))  # SAM found all but the white cell
    assert sorted(c.kind for c in seg.cells) == sorted(k for k, _ in small)
    missed = union_mask(plate.shape[:2], [wbc], dilate=0)
    assert np.abs(image.astype(int) - plate)[missed].mean() > 30
    assert np.abs(seg.background.astype(int) - plate)[missed].mean() < 8  # the white cell is gone from the plate
    nothing = segmentation_of(image, [], [])  # random weights: no mask at all
    every = union_mask(plate.shape[:2], [m for _, m in truth], dilate=0)
    assert nothing.cells == [] and np.abs(nothing.background.astype(int) - plate)[every].mean() < 8


def test_sam_platelets_pass_the_platelet_rules() -> None:
    _, image, truth = drawn_scene("PLT", 0, 0, rbc=3, plt=2)
    plt = truth[0][1]  # the centre platelet, of a real platelet's size (UsableRules.plt_area: 150+ px)
    assert plt.sum() >= 150
    (cell,) = cells_from_masks(image, [plt], [0.95])
    assert cell.kind == "PLT" and cell.usable
    speck = np.zeros_like(plt)  # a few purple pixels of a platelet: far under a platelet's size
    ys, xs = np.nonzero(plt)
    cy, cx = int(ys.mean()), int(xs.mean())
    speck[cy - 2 : cy + 3, cx - 2 : cx + 3] = True
    (cell,) = cells_from_masks(image, [speck], [0.95])
    assert cell.kind == "PLT" and not cell.usable and cell.reason == "size"
    assert cell.score == 0.95  # SAM's predicted IoU, as for its red cells
