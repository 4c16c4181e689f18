"""White-cell variety (`compose --wbc-scale`, `--wbc-stain`, `--wbc-warp`, `--wbc-focus`): each variant of the
class's cell sized within the class's own size range, stained like another cell of the class, bent by a small
area-keeping warp, refocused to the scene's red-cell focus; off by default (the default images do not change)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from naturalize.bank import Bank
from naturalize.compose.library import load_library
from naturalize.compose.params import ComposeParams
from naturalize.compose.scene_stats import source_focus
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


def _disc(blur: float, opaque: bool = False) -> np.ndarray:
    """BGRA 80x80 red-cell-like disc (dark on light plasma) whose edge is blurred by `blur` px, its mask as
    alpha (the colour around it kept, as in a bank sprite; opaque=True: alpha 255 everywhere)."""
    import cv2

    big = np.zeros((800, 800), np.float32)
    cv2.circle(big, (400, 400), 280, 1.0, -1)
    disc = cv2.resize(big, (80, 80), interpolation=cv2.INTER_AREA)
    soft = cv2.GaussianBlur(disc, (0, 0), blur) if blur > 0 else disc
    out = np.zeros((80, 80, 4), np.uint8)
    out[..., 0], out[..., 1], out[..., 2] = (np.rint(v - 110 * soft).astype(np.uint8) for v in (200, 215, 235))
    out[..., 3] = 255 if opaque else (disc >= 0.5) * 255
    return out


def test_edge_sigma_measures_the_blur_of_a_cell_edge() -> None:
    from naturalize.compose.variety import edge_sigma

    got = [edge_sigma(_disc(s)) for s in (0.0, 1.0, 1.5, 2.0, 3.0)]
    assert all(a < b for a, b in zip(got, got[1:])), got  # blurrier edge, larger estimate
    # a step blurred by s reads as about sqrt(s^2 + 0.7^2) (the pixel grid's own blur added) over the range of
    # real PBC images (1.0-1.9 px on the sample); the EDGE_BAND px band under-reads blurs beyond ~2.5 px
    for s, g in zip((1.0, 1.5, 2.0), got[1:4]):
        assert abs(g - np.hypot(s, 0.7)) < 0.15, (s, g)
    flat = _disc(0.0)
    flat[..., :3] = 200
    assert edge_sigma(flat) is None  # no edge, no estimate


def test_focus_moves_the_cell_to_the_scene_focus() -> None:
    from naturalize.compose.variety import MAX_SHARPEN, edge_sigma, focus_table, refocus

    def measured(bgri: np.ndarray) -> float:
        bgra = bgri.copy()
        bgra[..., 3] = _disc(0.0)[..., 3]  # the disc's own mask to measure on
        return edge_sigma(bgra)

    sharp, soft = _disc(1.0, opaque=True), _disc(2.0, opaque=True)
    for bgra in (sharp, soft):
        bgra[..., 3] = 0  # premultiplied BGR + inverse alpha of an opaque patch (split_warped's layout)
    s_sharp, s_soft = measured(sharp), measured(soft)
    # a sharp cell pasted into a blurrier scene is blurred to the scene's focus
    to_soft = focus_table([s_sharp], [s_soft])[0, 0]
    assert to_soft > 0 and abs(measured(refocus(sharp, float(to_soft))) - s_soft) < 0.2
    # a soft cell in a sharper scene is sharpened toward it (an unsharp mask of at most MAX_SHARPEN px^2 undoes
    # part of a blur: 2.0 -> 1.8 px here, never past the scene's focus)
    to_sharp = float(focus_table([s_soft], [s_sharp])[0, 0])
    assert to_sharp < -MAX_SHARPEN
    assert s_sharp < measured(refocus(soft, to_sharp)) < s_soft - 0.15
    assert measured(refocus(soft, to_sharp)) < measured(refocus(soft, -0.5)) < s_soft
    # the same focus leaves the cell as it is; a sharpened cell stays a valid premultiplied sprite
    assert refocus(soft, 0.0) is soft
    half = _disc(2.0)
    half[..., :3] = (half[..., :3].astype(np.uint16) * half[..., 3:] // 255).astype(np.uint8)
    half[..., 3] = 255 - half[..., 3]
    sharpened = refocus(half, -1.0)
    assert np.all(sharpened[..., :3].astype(int) <= 255 - sharpened[..., 3:].astype(int))


def test_shape_warp_is_small_smooth_area_keeping_and_seeded() -> None:
    import cv2

    from naturalize.compose.variety import WARP_PX, shape_warp, warp_field

    d = warp_field((120, 100), np.random.default_rng(5))
    length = np.sqrt((d**2).sum(axis=-1))
    assert WARP_PX * 0.5 - 1e-3 <= length.max() <= WARP_PX + 1e-3
    # smooth: neighbouring pixels move alike (a fraction of a px apart)
    assert np.abs(np.diff(d, axis=0)).max() < 0.3 and np.abs(np.diff(d, axis=1)).max() < 0.3
    cell = np.zeros((120, 100, 4), np.uint8)
    cv2.ellipse(cell, (50, 60), (38, 46), 0, 0, 360, (120, 60, 140, 255), -1)
    cv2.circle(cell, (45, 55), 20, (90, 20, 80, 255), -1)  # a "nucleus"
    area = np.count_nonzero(cell[..., 3] >= 128)
    for seed in range(6):
        bent = shape_warp(cell, seed)
        assert np.array_equal(bent, shape_warp(cell, seed))  # same seed, same bytes
        assert not np.array_equal(bent, cell)
        assert abs(np.count_nonzero(bent[..., 3] >= 128) - area) < 0.02 * area  # area kept within 2 %
        nucleus = np.count_nonzero(bent[..., 0] == 90)
        assert nucleus > 0.8 * np.pi * 20**2  # the nucleus still there, not smeared
        # no pixel moved farther than WARP_PX: the warped mask lies within the grown original
        grown = cv2.dilate(cell[..., 3], cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)))
        assert not np.any((bent[..., 3] >= 128) & (grown == 0))
    assert not np.array_equal(shape_warp(cell, 0), shape_warp(cell, 1))


def test_warp_and_focus_switches_compose_recorded_and_reproducible(bank: Path, tmp_path: Path) -> None:
    from naturalize.compose.run import compose_class

    p = ComposeParams(wbc_warp=True, wbc_focus=True)
    one = compose_class(bank, "PMY", 6, tmp_path / "one", params=p, workers=1, progress=False)
    two = compose_class(bank, "PMY", 6, tmp_path / "two", params=p, workers=2, progress=False)
    plain = compose_class(bank, "PMY", 6, tmp_path / "plain", params=ComposeParams(), workers=1, progress=False)
    assert [a.read_bytes() for a in one] == [b.read_bytes() for b in two]
    assert [a.read_bytes() for a in one] != [b.read_bytes() for b in plain]
    lines = [json.loads(x) for x in (tmp_path / "one" / "manifest.jsonl").read_text().splitlines()]
    sigma = source_focus(Bank.open(bank))
    for rec in lines:
        centre = [c for c in rec["cells"] if c["centre"]][0]
        assert isinstance(centre["warp"], int)
        donor = rec["background"]["source"]
        want = sigma[donor] ** 2 - sigma[centre["source"]] ** 2
        assert centre["focus"] == pytest.approx(want, abs=1e-3)
        assert all("warp" not in c and "focus" not in c for c in rec["cells"] if not c["centre"])
    plain_lines = (tmp_path / "plain" / "manifest.jsonl").read_text()
    assert '"warp"' not in plain_lines and '"focus"' not in plain_lines  # off: records as before
    assert p.as_dict()["wbc_warp"] and json.loads((tmp_path / "one" / "manifest.jsonl").read_text().splitlines()[0])


def test_a_run_made_before_the_switches_existed_resumes(bank: Path, tmp_path: Path) -> None:
    from naturalize.compose.run import STATE_DIR, compose_class

    out = tmp_path / "run"
    first = compose_class(bank, "PMY", 3, out, params=ComposeParams(), workers=1, progress=False)
    state = out / STATE_DIR / "PMY.json"
    old = json.loads(state.read_text())
    for key in ("wbc_warp", "wbc_focus"):  # as an older version wrote it
        del old["params"][key]
    state.write_text(json.dumps(old))
    stamps = [p.stat().st_mtime_ns for p in first]
    again = compose_class(bank, "PMY", 3, out, params=ComposeParams(), workers=1, progress=False)
    assert again == first and [p.stat().st_mtime_ns for p in first] == stamps  # resumed: nothing redone
