"""The learned red-cell outline model: shipped weights load, features are sane, the gate applies it."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from naturalize.drawn import draw_image, image_rng
from naturalize.segment.cells import Cell, Segmentation
from naturalize.segment.classical import segment_classical
from naturalize.segment.gate import GateRules, judge, learned_pool
from naturalize.segment.outline import FEATURES, WEIGHTS, OutlineModel, rbc_features, rbc_outline_prob, shipped_model


def test_the_shipped_weights_load_and_are_small() -> None:
    model = shipped_model()
    assert model is not None, f"{WEIGHTS} missing: run benchmarks/train_rbc_outline.py --write"
    assert WEIGHTS.stat().st_size < 20_000
    assert model.w1.shape[0] == len(FEATURES) and np.isfinite(model.w1).all()
    again = OutlineModel.from_json(model.to_json())
    x = np.random.default_rng(0).normal(size=(5, len(FEATURES)))
    assert np.allclose(again.prob(x), model.prob(x), atol=1e-5)
    p = model.prob(x)
    assert ((p > 0) & (p < 1)).all()


def test_weights_for_other_features_are_refused() -> None:
    text = shipped_model().to_json().replace('"solidity"', '"roundness"')
    with pytest.raises(ValueError, match="features"):
        OutlineModel.from_json(text)


def test_a_round_lone_red_cell_scores_higher_than_a_half_cell() -> None:
    rgb = draw_image("LY", image_rng(0, "LY", 0))
    seg = segment_classical(rgb)
    rbc = max((c for c in seg.of_kind("RBC", usable_only=True)), key=lambda c: c.score)
    half = rbc.mask.copy()
    x0, y0, x1, y1 = rbc.box
    half[:, (x0 + x1) // 2 :] = False  # a fragment: the same cell cut in two
    cells = [*seg.cells, Cell("RBC", half, 0.9, False, True)]
    probs = rbc_outline_prob(rgb, Segmentation(cells, seg.background))
    assert probs[next(i for i, c in enumerate(seg.cells) if c is rbc)] > probs[len(cells) - 1]
    idx, x = rbc_features(rgb, Segmentation(cells, seg.background), [len(cells) - 1])
    assert idx == [len(cells) - 1] and x.shape == (1, len(FEATURES)) and np.isfinite(x).all()


def test_the_gate_keeps_exactly_the_pooled_red_cells_the_model_trusts() -> None:
    rgb = draw_image("MO", image_rng(0, "MO", 1))
    seg = segment_classical(rgb)
    rules = GateRules()
    hand = judge(rgb, seg, "MO", replace(rules, rbc_min_outline=0.0))
    pool = learned_pool(seg, hand, rules)
    assert pool and all(seg.cells[i].kind == "RBC" for i in pool)
    probs = rbc_outline_prob(rgb, seg, pool)
    learned = judge(rgb, seg, "MO", rules)
    for i, v in enumerate(learned):
        if i in pool:
            assert (v.reason == "ok") == (probs[i] >= rules.rbc_min_outline)
        else:  # white cells, platelets and RBCs outside the pool keep the hand rules' verdict
            assert v == hand[i]


@pytest.mark.slow
def test_outline_model_precision_on_real_tuning_images(sample_release: Path, sample_boxes: Path) -> None:
    """On 120 tuning-half images the kept red cells match OI-PBC boxes better than with the hand rules alone."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from segment_quality import halves, load_boxes, match_count

    images = sorted(p for p in sample_release.glob("*/*.jpg") if (sample_boxes / f"{p.stem}.txt").exists())
    tuning = halves(images)["tuning"][::14]
    tally = {"hand": [0, 0], "learned": [0, 0]}
    for path in tuning:
        cls = path.stem.split("_")[0]
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        truth = load_boxes(sample_boxes / f"{path.stem}.txt", rgb.shape[1], rgb.shape[0])["RBC"]
        seg = segment_classical(rgb)
        for name, rules in (("hand", GateRules(rbc_min_outline=0.0)), ("learned", GateRules())):
            kept = [
                c.box
                for c, v in zip(seg.cells, judge(rgb, seg, "PLT" if cls == "PLATELET" else cls, rules))
                if c.kind == "RBC" and v.reason == "ok"
            ]
            tally[name][0] += len(kept)
            tally[name][1] += match_count(kept, truth, 0.7)
    hand, learned = (tally[k][1] / tally[k][0] for k in ("hand", "learned"))
    assert learned > hand and learned >= 0.96
    assert tally["learned"][0] >= 3.8 * len(tuning)
