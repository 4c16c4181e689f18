"""Train the white-cell mask refinement model (naturalize/segment/refine.py) on the tuning half of the annotated sample.

Usage:
    python benchmarks/train_wbc_refine.py [--sample DIR] [--cache CANDIDATES.npz] [--check] [--write]

Every tuning-half image with exactly one OI-PBC white-cell box is segmented by the classical backend without
the refinement; the white cell whose box fits the annotated one best gives one row per candidate mask
(`refine.CANDIDATES`): its `refine.FEATURES` and the IoU of its full-resolution box with the annotated box.
A standardised one-hidden-layer perceptron (scikit-learn MLPClassifier, 16 ReLU units, seeded) learns whether a
candidate's IoU is >= 0.8. `--check` fits on one seeded half of the tuning images and prints, on the other
half, how many images the refinement brings to IoU >= 0.8 for a range of margins (per class; the overfitting
check the margin is chosen on); `--write` fits on the whole tuning half and writes
naturalize/segment/wbc_refine.json. The report half is never read.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from segment_quality import load_boxes  # benchmarks/ is the script's folder
from tqdm import tqdm
from train_rbc_outline import fit, training_args

from naturalize.fsio import write_text
from naturalize.segment.cells import box_iou
from naturalize.segment.classical import ClassicalParams, _upscale, segment_classical
from naturalize.segment.outline import OutlineModel
from naturalize.segment.refine import CANDIDATES, FEATURES, WEIGHTS, choose

BASE = ClassicalParams(wbc_refine=False)
MARGINS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3)


def collect(images: list[Path], boxdir: Path) -> dict[str, np.ndarray]:
    """Candidate rows of the single-WBC images: x (N, F), iou (N,), img (N,) image index, cls (N,) class."""
    xs, ious, img, cls_ = [], [], [], []
    for k, path in enumerate(tqdm(images, desc="candidates", unit="img")):
        cls = path.stem.split("_")[0]
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        truth = load_boxes(boxdir / f"{path.stem}.txt", w, h)["WBC"]
        if len(truth) != 1:
            continue
        trace: list = []
        segment_classical(rgb, BASE, trace=trace)
        f = BASE.work_size / min(h, w)
        small = (max(8, round(h * f)), max(8, round(w * f)))
        best: tuple[float, np.ndarray, list[float]] | None = None
        for _i, sl, cands, feats in trace:
            row_iou = []
            for c in cands:
                m = np.zeros(small, bool)
                m[sl] = c
                box = _upscale(m, (h, w))[1]
                row_iou.append(box_iou(box, truth[0]) if box else 0.0)
            if best is None or row_iou[0] > best[0]:
                best = (row_iou[0], feats, row_iou)
        if best is None or best[0] < 0.3:  # no white cell on the annotated one: nothing to refine
            continue
        xs += list(best[1])
        ious += best[2]
        img += [k] * len(CANDIDATES)
        cls_ += [cls] * len(CANDIDATES)
    return {"x": np.array(xs), "iou": np.array(ious), "img": np.array(img), "cls": np.array(cls_)}


def evaluate(model: OutlineModel, d: dict[str, np.ndarray], rows: np.ndarray) -> None:
    """Images at IoU >= 0.8 with the mask alone, with the refinement at each margin, and the best candidate (oracle)."""
    imgs = np.unique(d["img"][rows])
    k = len(CANDIDATES)
    print(
        f"{len(imgs)} images; columns: class, images, mask alone, " + ", ".join(f"m={m}" for m in MARGINS) + ", oracle"
    )
    per: dict[str, list] = {}
    for i in imgs:
        r = np.flatnonzero(d["img"] == i)
        assert len(r) == k
        iou, p = d["iou"][r], model.prob(d["x"][r])
        c = str(d["cls"][r[0]])
        got = [iou[0] >= 0.8] + [iou[choose(p, m)] >= 0.8 for m in MARGINS] + [iou.max() >= 0.8]
        for key in (c, "all"):
            per.setdefault(key, []).append(got)
    for key, v in sorted(per.items()):
        a = np.array(v, float)
        print(f"{key:6s} {len(a):5d} " + " ".join(f"{x:6.1%}" for x in a.mean(axis=0)))


def main() -> None:
    args, tuning, boxdir = training_args(__doc__ or "", WEIGHTS)
    if args.cache and args.cache.exists():
        d = dict(np.load(args.cache))
    else:
        d = collect(tuning, boxdir)
        if args.cache:
            np.savez(args.cache, **d)
    if d["x"].shape[1] != len(FEATURES):
        raise SystemExit(f"error: {args.cache} holds {d['x'].shape[1]} features, not {len(FEATURES)}: delete it")
    y = d["iou"] >= 0.8
    n_img = len(np.unique(d["img"]))
    print(f"{len(y)} candidates of {n_img} single-WBC tuning images, {y.mean():.4f} at IoU >= 0.8")
    if args.check:
        ids = np.unique(d["img"])
        a = np.random.default_rng(0).permutation(len(ids))[: len(ids) // 2]
        in_a = np.isin(d["img"], ids[a])
        model = fit(d["x"][in_a], y[in_a], FEATURES)
        print("== fitted on sub-half A, scored on sub-half B")
        evaluate(model, d, ~in_a)
        print("== scored on sub-half A (the fit's own rows)")
        evaluate(model, d, in_a)
    if args.write:
        model = fit(d["x"], y, FEATURES)
        write_text(WEIGHTS, model.to_json())
        print(f"wrote {WEIGHTS}")
        evaluate(model, d, np.ones(len(y), bool))


if __name__ == "__main__":
    main()
