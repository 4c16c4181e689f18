"""benchmarks/scene_match.py: the per-image scene statistics the matched scene is checked with."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import scene_match as sm  # noqa: E402


def test_image_stats_counts_cut_touching_and_contacting_red_cells() -> None:
    labels = np.zeros((100, 100), np.uint16)
    labels[40:60, 40:60] = 1  # the white cell, centred on the image
    labels[0:10, 10:20] = 2  # red cell cut by the top border
    labels[0:10, 20:30] = 3  # red cell touching it, also cut
    labels[70:80, 70:80] = 4  # lone red cell
    labels[38:40, 45:50] = 5  # red cell touching the white cell
    labels[90:92, 10:12] = 6  # a platelet
    kinds = ["WBC", "RBC", "RBC", "RBC", "RBC", "PLT", "RBC"]  # the last red cell is not in the map (hidden)
    st = sm.image_stats(labels, kinds)
    assert st["n_rbc"] == 4  # only the red cells that show
    assert st["border_cut"] == pytest.approx(2 / 4)
    assert st["rbc_touching"] == pytest.approx(2 / 4)  # cells 2 and 3 touch each other; 5 touches only the white
    assert st["rbc_wbc_contact"] == 1.0
    assert st["n_plt"] == 1.0
    assert st["coverage"] == pytest.approx((100 + 100 + 100 + 10) / 100**2)
    assert st["wbc_dx"] == pytest.approx(0.0) and st["wbc_dy"] == pytest.approx(0.0)
    assert sm.image_stats(labels, kinds, n_rbc=19)["n_rbc"] == 19  # the curation's count when given


def test_image_stats_of_a_plate_without_cells() -> None:
    st = sm.image_stats(np.zeros((10, 12), np.uint16), [])
    assert st == {k: 0.0 for k in sm.STATS}
