"""Train the white-cell mask refinement model (naturalize/segment/refine.py) on the tuning half of the annotated sample.

Usage:
    python benchmarks/train_wbc_refine.py [--sample DIR] [--cache CANDIDATES.npz] [--check] [--write]

Every tuning-half image with exactly one OI-PBC white-cell box is segmented by the classical backend without
the refinement; the white cell whose box fits the annotated one best gives one row per candidate mask
(`refine.CANDIDATES`): its `refine.FEATURES` and the IoU of its full-resolution box with the annotated box.
The features hold the image's class. A standardised one-hidden-layer perceptron (scikit-learn MLPClassifier, 16
ReLU units, seeded) learns whether a candidate's IoU is >= 0.8. `--check` fits on one seeded half of the tuning
images and scores the other, both ways, over 5 seeded halvings, and prints per class how many images reach IoU
>= 0.8 with the mask alone, refined at a range of margins, and with the best candidate; the refinement is used
for the classes it helped there. `--write` also fits on the whole tuning half and writes
naturalize/segment/wbc_refine.json (the weights and those classes). The report half is never read.
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
from naturalize.segment.refine import CANDIDATES, FEATURES, WEIGHTS, Refiner, choose

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
        segment_classical(rgb, BASE, trace=trace, label=cls)
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


def held_out(d: dict[str, np.ndarray], splits: int = 5) -> dict[str, np.ndarray]:
    """Per class (and "all"): (images, hits with the mask alone, hits refined at each margin, hits of the best
    candidate) summed over `splits` seeded halvings of the tuning images, each half scored by a model fitted on
    the other (every image is scored `splits` times, never by a model that saw it)."""
    y = d["iou"] >= 0.8
    ids = np.unique(d["img"])
    k = len(CANDIDATES)
    out: dict[str, np.ndarray] = {}
    for seed in range(splits):
        a = np.isin(d["img"], ids[np.random.default_rng(seed).permutation(len(ids))[: len(ids) // 2]])
        for fit_rows, test_rows in ((a, ~a), (~a, a)):
            model = fit(d["x"][fit_rows], y[fit_rows], FEATURES)
            for i in np.unique(d["img"][test_rows]):
                r = np.flatnonzero(d["img"] == i)
                assert len(r) == k
                iou, p = d["iou"][r], model.prob(d["x"][r])
                got = np.array([1, iou[0] >= 0.8] + [iou[choose(p, m)] >= 0.8 for m in MARGINS] + [iou.max() >= 0.8])
                for key in (str(d["cls"][r[0]]), "all"):
                    out[key] = out.get(key, 0) + got
    return out


def print_table(table: dict[str, np.ndarray]) -> None:
    print("class, images, mask alone, " + ", ".join(f"m={m}" for m in MARGINS) + ", oracle (held out)")
    for key, v in sorted(table.items()):
        print(f"{key:6s} {int(v[0]):5d} " + " ".join(f"{x / v[0]:6.1%}" for x in v[1:]))


def refined_classes(table: dict[str, np.ndarray]) -> tuple[str, ...]:
    """The classes whose held-out hits at margin 0 beat the mask alone: the refinement is used for those only."""
    m0 = 2 + MARGINS.index(0.0)
    return tuple(sorted(c for c, v in table.items() if c != "all" and v[m0] > v[1]))


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
    print(f"{len(y)} candidates of {len(np.unique(d['img']))} single-WBC tuning images, {y.mean():.4f} at IoU >= 0.8")
    if not (args.check or args.write):
        return
    table = held_out(d)
    print_table(table)
    classes = refined_classes(table)
    print(f"refined classes (held-out gain at margin 0): {', '.join(classes)}")
    if args.write:
        write_text(WEIGHTS, Refiner(fit(d["x"], y, FEATURES), classes).to_json())
        print(f"wrote {WEIGHTS}")


if __name__ == "__main__":
    main()
