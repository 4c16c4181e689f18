"""White-cell variety (`compose --wbc-scale`): each variant of the class's cell is sized within the class's
own size range; off by default (the default images do not change)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from naturalize.bank import Bank
from naturalize.compose.library import load_library
from naturalize.compose.params import ComposeParams
from naturalize.compose.variety import SCALE_LIMIT, size_range
from naturalize.testing.boxbank import make_box_bank, pick_images


@pytest.fixture(scope="module")
def bank(sample_release: Path, sample_boxes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    images = pick_images(sample_release, sample_boxes, {"PMY": 10, "LY": 2})
    return make_box_bank(sample_release, sample_boxes, images, tmp_path_factory.mktemp("bank"))


def test_variants_are_sized_within_the_class_range(bank: Path) -> None:
    b = Bank.open(bank)
    p = ComposeParams(scene="paper", wbc_scale=True)
    lib = load_library(b, "PMY", 0, p)
    lo, hi = size_range(np.array([r.area for r in b.select("WBC", "PMY")]))
    diameters, clipped = [], 0
    for i in range(len(lib.centre)):
        own = np.sqrt(lib.centre.areas[i])
        for v in range(len(lib.centre.transforms[i])):
            t = lib.centre.transforms[i][v]
            if abs(t.scale - SCALE_LIMIT) < 1e-9 or abs(t.scale - 1 / SCALE_LIMIT) < 1e-9:
                clipped += 1
                continue
            d = np.sqrt(lib.centre.variant(i, v).area)
            assert lo * 0.95 <= d <= hi * 1.05, (d, lo, hi, own)
            diameters.append(d)
    assert len(diameters) >= len(lib.centre) * 2 and np.std(diameters) > 0.1 * (hi - lo)
    # off (the default): the transforms are the ones drawn before the switch existed
    plain = load_library(b, "PMY", 0, replace(p, wbc_scale=False))
    assert all(abs(t.scale - 1) <= p.scale_jitter for ts in plain.centre.transforms for t in ts)


def test_stain_variety_moves_cells_toward_other_cells_of_the_class(bank: Path) -> None:
    from naturalize.compose.core import compose_image
    from naturalize.compose.variety import TINT_LIMIT, stain_of

    b = Bank.open(bank)
    p = ComposeParams(scene="paper", wbc_stain=True)
    lib = load_library(b, "PMY", 0, p)
    stains = np.array([stain_of(x, q) for x, q in zip(lib.centre.bgra, lib.centre.plasma)])
    t = lib.centre.tints
    assert t.shape == (len(lib.centre), p.centre_variants, 3)
    assert np.all((t >= 1 / TINT_LIMIT - 1e-6) & (t <= TINT_LIMIT + 1e-6)) and np.abs(t - 1).max() > 0.01
    # every factor takes the cell's stain to another cell's of the class (unless clipped)
    for i in range(len(t)):
        for v in range(t.shape[1]):
            moved = stains[i] * t[i, v]
            hit = [np.allclose(moved, s, atol=1e-4) for s in stains]
            assert any(hit) or np.isclose(np.abs(np.log(t[i, v])).max(), np.log(TINT_LIMIT), atol=1e-4)
    # the recorded gain is the plate's stain gain times the variant's factor
    plain = load_library(b, "PMY", 0, replace(p, wbc_stain=False))
    for n in range(5):
        a = compose_image(lib, np.random.default_rng([0, 9, n]), p).cells[-1]
        c = compose_image(plain, np.random.default_rng([0, 9, n]), p).cells[-1]
        assert a.index == c.index and a.transform == c.transform
        ratio = np.asarray(a.gain) / np.asarray(c.gain)
        assert any(np.allclose(ratio, f, rtol=1e-5) for f in t[a.index])
