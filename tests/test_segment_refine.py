"""The learned white-cell mask refinement: shipped weights load the way users take them, the backend without
them is the plain classical one, a bank records which weights made it, and refined cells stay whole cells."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from naturalize.segment import BACKENDS
from naturalize.segment import refine as refine_mod
from naturalize.segment.border import COLUMNS as BORDER_COLUMNS
from naturalize.segment.border import BorderMaps, border_features
from naturalize.segment.border import columns as border_columns
from naturalize.segment.cells import box_iou
from naturalize.segment.classical import ClassicalParams, segment_classical
from naturalize.segment.outline import OutlineModel, weights_id
from naturalize.segment.refine import CANDIDATES, FEATURES, WEIGHTS, Refiner, choose, shipped_model
from naturalize.testing.drawnbank import drawn_scene

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # the training scripts

PLAIN = ClassicalParams(wbc_refine=False)


def test_the_shipped_weights_load_from_their_file_and_are_small(tmp_path: Path) -> None:
    refiner = shipped_model()
    assert refiner is not None, f"{WEIGHTS} missing: run benchmarks/train_wbc_refine.py --write"
    assert WEIGHTS.stat().st_size < 20_000 and refiner.model.features == FEATURES
    assert "BA" in refiner.classes and "PLT" not in refiner.classes
    saved = tmp_path / "refine.json"
    saved.write_text(refiner.to_json())
    again = Refiner.from_json(saved.read_text())
    x = np.random.default_rng(0).normal(size=(len(CANDIDATES), len(FEATURES)))
    assert np.allclose(again.model.prob(x), refiner.model.prob(x), atol=1e-5) and again.classes == refiner.classes


def test_weights_naming_an_unknown_class_are_refused() -> None:
    text = WEIGHTS.read_text().replace('"refine_classes": ["BA"', '"refine_classes": ["XX"')
    with pytest.raises(ValueError, match="refine_classes"):
        Refiner.from_json(text)


def test_weights_for_other_features_are_refused() -> None:
    text = WEIGHTS.read_text().replace('"is_dilate"', '"is_bigger"')
    with pytest.raises(ValueError, match="features"):
        OutlineModel.from_json(text, FEATURES)


def test_a_candidate_replaces_the_mask_only_when_it_beats_it_by_the_margin() -> None:
    assert choose(np.array([0.5, 0.58, 0.1]), 0.1) == 0
    assert choose(np.array([0.5, 0.61, 0.1]), 0.1) == 1
    assert choose(np.array([0.9, 0.2, 0.95]), 0.0) == 2


def _image(cls: str) -> np.ndarray:
    return drawn_scene(cls, 0, 0, rbc=6, plt=2)[1]


def _same(a, b) -> bool:
    return (
        [c.kind for c in a.cells] == [c.kind for c in b.cells]
        and all(np.array_equal(x.mask, y.mask) for x, y in zip(a.cells, b.cells))
        and np.array_equal(a.background, b.background)
    )


def test_without_the_weights_file_the_backend_is_the_plain_classical_one(monkeypatch: pytest.MonkeyPatch) -> None:
    rgb = _image("BA")
    plain = segment_classical(rgb, PLAIN)
    monkeypatch.setattr(refine_mod, "WEIGHTS", WEIGHTS.with_name("absent.json"))
    refine_mod.shipped_model.cache_clear()
    try:
        again = segment_classical(rgb, label="BA")
    finally:
        refine_mod.shipped_model.cache_clear()
    assert _same(again, plain)


def test_an_unknown_class_or_one_the_refinement_did_not_help_keeps_the_plain_masks() -> None:
    refiner = shipped_model()
    assert refiner is not None
    other = next(c for c in ("ERB", "EO", "MO", "MY") if c not in refiner.classes)
    for cls, label in (("BA", ""), (other, other)):
        rgb = drawn_scene(cls, 0, 2, rbc=6, plt=2)[1]
        assert _same(segment_classical(rgb, label=label), segment_classical(rgb, PLAIN))


def test_the_bank_identity_names_the_refinement_weights() -> None:
    d = BACKENDS["classical"].describe()
    assert d["wbc_refine_model"] == weights_id(WEIGHTS) and d["wbc_refine_model"]
    assert d["rbc_outline_model"]
    assert BACKENDS["classical"].describe(wbc_refine=False)["wbc_refine_model"] is None


@pytest.mark.parametrize("cls", ["BA", "MO", "MMY", "LY", "ERB"])
def test_refined_white_cells_are_still_the_drawn_cell(cls: str) -> None:
    """On drawn scenes (true masks known) refining keeps one white cell, on the true one, with its nucleus."""
    plate, rgb, truth = drawn_scene(cls, 0, 1, rbc=6, plt=2)
    true_wbc = next(m for k, m in truth if k == "WBC")
    trace: list = []
    plain = segment_classical(rgb, PLAIN, trace=trace, label=cls)
    refined = segment_classical(rgb, label=cls)
    assert (
        len(trace) == 1
        and len(trace[0][2]) == len(CANDIDATES)
        and trace[0][3].shape == (len(CANDIDATES), len(FEATURES))
    )
    (a,), (b,) = plain.of_kind("WBC"), refined.of_kind("WBC")
    ys, xs = np.nonzero(true_wbc)
    true_box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert box_iou(b.box, true_box) >= min(0.8, box_iou(a.box, true_box) - 0.05)
    assert (b.mask & true_wbc).sum() >= 0.8 * b.area  # it did not grow into the red cells around it


@pytest.mark.slow
def test_refinement_gains_on_real_tuning_images(sample_release: Path, sample_boxes: Path) -> None:
    """On ~240 single-WBC tuning-half images more white-cell boxes reach IoU >= 0.8 than without it."""
    from segment_quality import halves, load_boxes, primary_wbc

    images = sorted(p for p in sample_release.glob("*/*.jpg") if (sample_boxes / f"{p.stem}.txt").exists())
    hits = {"plain": 0, "refined": 0}
    for path in halves(images)["tuning"][::6]:
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        truth = load_boxes(sample_boxes / f"{path.stem}.txt", rgb.shape[1], rgb.shape[0])["WBC"]
        if len(truth) != 1:
            continue
        label = path.stem.split("_")[0]
        for name, params in (("plain", PLAIN), ("refined", ClassicalParams())):
            c = primary_wbc(segment_classical(rgb, params, label=label), rgb.shape[1], rgb.shape[0])
            hits[name] += c is not None and box_iou(c.box, truth[0]) >= 0.8
    assert hits["refined"] > hits["plain"]


def test_the_held_out_check_refines_only_the_classes_it_helped_and_pools_the_rest_with_the_mask() -> None:
    """The pooled figure new refinement models are adopted on: gained classes refined, the others keep the mask."""
    from train_wbc_refine import MARGINS, pooled, refined_classes

    def row(images: int, mask: int, margin0: int) -> np.ndarray:
        v = np.zeros(3 + len(MARGINS), int)
        v[0], v[1], v[2 + MARGINS.index(0.0)], v[-1] = images, mask, margin0, images
        return v

    table = {"BA": row(100, 80, 95), "ERB": row(50, 48, 45), "LY": row(40, 39, 39)}
    table["all"] = sum(table.values())
    assert refined_classes(table) == ("BA",)
    assert pooled(table, refined_classes(table)) == (95 + 48 + 39, 190)
    assert pooled(table, ()) == (80 + 48 + 39, 190)


@pytest.mark.parametrize("t", range(4))
def test_a_mirrored_training_image_keeps_its_white_cell_inside_the_mirrored_box(t: int) -> None:
    """train_wbc_refine.py --flips: the box is mirrored with the image, so it frames the same pixels."""
    from train_wbc_refine import FLIPS, flipped

    rgb = np.zeros((60, 80, 3), np.uint8)
    rgb[10:25, 5:30] = (120, 40, 160)  # a white cell in the top-left corner
    img, (x0, y0, x1, y1) = flipped(rgb, (5.0, 10.0, 30.0, 25.0), t)
    assert img.shape == rgb.shape and img.flags.c_contiguous
    assert (img[int(y0) : int(y1), int(x0) : int(x1)] == (120, 40, 160)).all() and img.sum() == rgb.sum()
    assert (x0 != 5.0) == FLIPS[t][0] and (y0 != 10.0) == FLIPS[t][1]


def _drawn_disc(step: float = 0.5) -> tuple[BorderMaps, list[np.ndarray]]:
    """A drawn white cell (radius 15 px; green drops by `step` inside it) and three candidates: the cell, grown and
    shrunk by 3 px."""
    yy, xx = np.mgrid[:60, :60]
    r = np.hypot(yy - 30, xx - 30)
    cell = r <= 15
    maps = BorderMaps(np.where(cell, 1.0 - step, 1.0), np.where(cell, 0.9, 0.2), np.where(cell, 40.0, 2.0), cell, 0.3)
    return maps, [cell, r <= 18, r <= 12]


def test_border_evidence_peaks_on_the_cells_true_outline() -> None:
    """A candidate on the drawn cell's edge has the strongest contour gradient (the green step itself: a Scharr
    magnitude scaled to a unit step), the sharpest inside/outside step and nothing of the cell beyond its box;
    one grown or shrunk by 3 px sits in flat colour and has neither."""
    maps, cands = _drawn_disc(0.5)
    f = border_features(cands, maps)
    col = {n: f[:, BORDER_COLUMNS.index(n)] for n in BORDER_COLUMNS}
    assert f.shape == (3, len(BORDER_COLUMNS)) and np.isfinite(f).all()
    assert 0.3 < col["edge_g"][0] <= 0.5 and max(col["edge_g"][1:]) < 0.05  # the step is 0.5, blurred at the rim
    assert col["edge_rel_g"][0] == 0 > max(col["edge_rel_g"][1:]) and col["ridge_g"][0] > max(col["ridge_g"][1:])
    assert col["step_green"][0] > 0.4 > max(abs(col["step_green"][1:])) and col["between_g"][0] < -0.3
    assert col["side_fg_max"][0] < 0.1 and col["side_fg_max"][2] == 1  # a shrunk box has cell beyond its sides
    assert col["side_edge_min"][0] > 0.2 > col["side_edge_min"][2]
    half = border_features(cands, _drawn_disc(0.25)[0])  # half the step: half the contour gradient
    assert np.isclose(half[0, BORDER_COLUMNS.index("edge_g")], col["edge_g"][0] / 2, rtol=1e-4)


def test_each_candidates_border_features_are_its_own() -> None:
    """The candidates are stacked and measured together; a candidate's row is the same alone with the mask as
    among the others, and a group asked alone gives its own columns."""
    maps, cands = _drawn_disc()
    odd = cands[0].copy()
    odd[5:9, 40:55] = True  # a second part away from the cell
    together = border_features([*cands, odd], maps)
    for k in range(1, 4):
        assert np.allclose(border_features([cands[0], [*cands, odd][k]], maps)[1], together[k], atol=1e-6)
    assert np.array_equal(border_features(cands, maps, ("step",)), together[:3, 10:13])
    assert border_columns(("edge",)) == ("edge_g", "edge_w")
    with pytest.raises(ValueError, match="unknown border groups"):
        border_features(cands, maps, ("edge", "snake"))


def test_a_listwise_model_is_reproducible_and_chooses_through_the_shipped_loading_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """train_wbc_refine.py --listwise: the same rows give a byte-identical weights file; written where the package
    reads its weights, it loads through `shipped_model` (numpy only) and picks, on cells it never saw, the candidate
    a feature marks as the right one."""
    import torch
    from train_wbc_refine import fit_listwise

    k, rng = len(CANDIDATES), np.random.default_rng(0)

    def cells(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = rng.normal(size=(n * k, len(FEATURES)))
        right = rng.integers(0, k, n)
        y = np.zeros(n * k, bool)
        y[np.arange(n) * k + right] = True
        x[:, FEATURES.index("box_fill")] += 4.0 * y  # the right candidate fills its box better
        return x, y, right

    x, y, _ = cells(200)
    threads = torch.get_num_threads()
    text = Refiner(fit_listwise(x, y, FEATURES, 8, 0.01, epochs=150), ("BA",)).to_json()
    assert torch.get_num_threads() == threads  # trained on one thread, the caller's setting restored
    assert text == Refiner(fit_listwise(x, y, FEATURES, 8, 0.01, epochs=150), ("BA",)).to_json()
    saved = tmp_path / "wbc_refine.json"
    saved.write_text(text)
    monkeypatch.setattr(refine_mod, "WEIGHTS", saved)
    refine_mod.shipped_model.cache_clear()
    try:
        loaded = shipped_model()
    finally:
        refine_mod.shipped_model.cache_clear()
    assert loaded is not None and loaded.classes == ("BA",) and loaded.model.features == FEATURES
    new, _, right = cells(50)
    picks = [choose(loaded.model.prob(new[i * k : (i + 1) * k]), 0.0) for i in range(50)]
    assert np.mean(np.array(picks) == right) > 0.8


def test_border_groups_named_for_the_model_are_appended_to_the_candidates_features(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """refine.BORDER_GROUPS (the shipped model's: edge, rel, side): the features a model reads end with those
    groups' border columns of each candidate; without groups they are the other columns alone."""
    assert refine_mod.BORDER_GROUPS == ("edge", "rel", "side")
    maps, cands = _drawn_disc()
    x = refine_mod.RefineInput(maps.fg, cands[2], maps.wbcness, maps.colour_dist, maps.green, maps.red_level, 1.0)
    sl = (slice(None), slice(None))
    all_cands = refine_mod.candidates(cands[0], maps.fg, x, sl)
    shipped = refine_mod.features(all_cands, x, sl)
    n0 = len(FEATURES) - len(border_columns(refine_mod.BORDER_GROUPS))
    assert shipped.shape == (len(CANDIDATES), len(FEATURES))
    assert FEATURES[n0:] == border_columns(("edge", "rel", "side"))
    assert np.array_equal(shipped[:, n0:], border_features(all_cands, maps, ("edge", "rel", "side")))
    monkeypatch.setattr(refine_mod, "BORDER_GROUPS", ())
    plain = refine_mod.features(all_cands, x, sl)
    assert np.array_equal(plain, shipped[:, :n0])
    monkeypatch.setattr(refine_mod, "BORDER_GROUPS", ("edge", "side"))
    more = refine_mod.features(all_cands, x, sl)
    assert np.array_equal(more[:, :n0], plain)
    assert np.array_equal(more[:, n0:], border_features(all_cands, maps, ("edge", "side")))


def test_per_class_margins_round_trip_and_bad_ones_are_refused() -> None:
    """The weights file's refine_margins: kept through to_json/from_json; a margin for a class not refined, or
    outside [0, 1], is refused; a class without one gets 0."""
    refiner = shipped_model()
    assert refiner is not None
    r = Refiner(refiner.model, ("BA", "LY", "MO"), (("LY", 0.3), ("MO", 0.05)))
    again = Refiner.from_json(r.to_json())
    assert again.margins == r.margins and again.classes == r.classes
    assert again.margin("LY") == 0.3 and again.margin("BA") == 0.0 and again.margin("") == 0.0
    assert "refine_margins" not in Refiner(refiner.model, ("BA",)).to_json()
    with pytest.raises(ValueError, match="refine_margins"):
        Refiner.from_json(Refiner(refiner.model, ("BA",), (("LY", 0.3),)).to_json())
    with pytest.raises(ValueError, match="refine_margins"):
        Refiner.from_json(Refiner(refiner.model, ("LY",), (("LY", 1.5),)).to_json())


def test_a_class_margin_of_one_keeps_every_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    """refine_white adds the refiner's margin for the image's class: at 1 no candidate can beat the mask, so the
    refined segmentation equals the plain one; at 0 the same model changes some cell of the scene."""
    base = shipped_model()
    assert base is not None
    changed = False
    for cls in ("BA", "MMY", "SNE", "LY"):
        rgb = _image(cls)
        plain = segment_classical(rgb, PLAIN, label=cls)
        for m, want_same in ((1.0, True), (0.0, False)):
            refiner = Refiner(base.model, (cls,), ((cls, m),))
            monkeypatch.setattr(refine_mod, "shipped_model", lambda r=refiner: r)
            same = _same(segment_classical(rgb, label=cls), plain)
            if want_same:
                assert same
            else:
                changed |= not same
    assert changed


def test_class_margins_are_parsed_chosen_and_pooled_the_way_the_check_prints_them() -> None:
    """train_wbc_refine.py --class-margins: "C=M" pairs of white-cell classes and MARGINS only; the best margin per
    class is the first with the most held-out hits when it beats the mask; pooling refines the listed classes at
    their margins and keeps the mask for the others."""
    from train_wbc_refine import MARGINS, best_margins, parse_margins, pooled_at

    assert parse_margins("BA=0.0,LY=0.3") == {"BA": 0.0, "LY": 0.3} and parse_margins("") == {}
    for bad in ("XX=0.0", "BA=0.07", "BA", "BA=x"):
        with pytest.raises(ValueError):
            parse_margins(bad)
    n = len(MARGINS)
    table = {
        "BA": np.array([10, 5, *([8] + [6] * (n - 1)), 9]),  # best at margin 0
        "LY": np.array([10, 7, *([7] * (n - 2) + [9, 9]), 10]),  # best (first of the tie) at MARGINS[-2]
        "EO": np.array([10, 9, *([9] * n), 10]),  # no margin beats the mask
    }
    table["all"] = sum(table.values())
    assert best_margins(table) == {"BA": MARGINS[0], "LY": MARGINS[-2]}
    assert pooled_at(table, best_margins(table)) == (8 + 9 + 9, 30)
    assert pooled_at(table, {}) == (5 + 7 + 9, 30)
