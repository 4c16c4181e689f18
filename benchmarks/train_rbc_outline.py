"""Train the red-cell outline model (naturalize/segment/outline.py) on the tuning half of the annotated sample.

Usage:
    python benchmarks/train_rbc_outline.py [--sample DIR] [--cache FEATURES.npz] [--check] [--write]

Every RBC the outline model decides (`gate.learned_pool`: kept by the hand rules, or rejected by the
backend only for shape, size or fragment) on a tuning-half image with OI-PBC RBC boxes gives one row:
its `outline.FEATURES` and whether its box matches an annotated RBC box at IoU >= 0.7. A standardised
one-hidden-layer perceptron (scikit-learn MLPClassifier, 16 ReLU units, seeded) is fitted. `--check` fits on one seeded
half of the tuning images and prints precision and kept sprites per image on the other half for a range
of thresholds (the overfitting check the threshold is chosen on); `--write` fits on the whole tuning half
and writes naturalize/segment/rbc_outline.json. The report half is never read. A `--cache` records the digest of
the code that made its rows (ROWS_CODE); one made by other code (or before caches were stamped) is refused.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from segment_quality import halves, load_boxes  # benchmarks/ is the script's folder
from tqdm import tqdm

from naturalize.codeversion import code_digest
from naturalize.fsio import atomic_open, write_text
from naturalize.segment.cells import box_iou
from naturalize.segment.classical import segment_classical
from naturalize.segment.gate import GateRules, judge, learned_pool
from naturalize.segment.outline import FEATURES, WEIGHTS, OutlineModel, rbc_features

HAND_ONLY = GateRules(rbc_min_outline=0.0)

#: What shapes the training rows of this script and of train_wbc_refine.py (which adds its own module): the
#: segmentation package, the boxes' reader and halving, and this script (its collect). A --cache records their digest.
ROWS_CODE = ("naturalize.segment", "segment_quality", "train_rbc_outline")


def cached_rows(cache: Path | None, code: str, make: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The rows stored in `cache` when it records `code` (a code_digest), else `make()`'s, written to `cache` (when
    given) atomically with `code`. A cache of other code, or of none recorded, is never read nor replaced:
    SystemExit with one error line (delete it or pass another --cache)."""
    if cache is not None and cache.exists():
        with np.load(cache) as d:
            rows = {k: d[k] for k in d.files}
        found = str(rows.pop("code", ""))
        if found != code:
            raise SystemExit(
                f"error: {cache} holds rows made by other code (code {found[:12] or 'none recorded'}, "
                f"this code {code[:12]}); delete it or pass another --cache"
            )
        return rows
    rows = make()
    if cache is not None:
        with atomic_open(cache, "wb") as f:
            np.savez(f, code=np.array(code), **rows)
    return rows


def collect(images: list[Path], boxdir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features (N, F), match at IoU >= 0.7 (N,), image index (N,)) of the pooled RBCs of `images`; an image
    without any gives one all-NaN row (it still counts for sprites per image)."""
    xs, ys, img = [], [], []
    for k, path in enumerate(tqdm(images, desc="features", unit="img")):
        cls = path.stem.split("_")[0]
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        truth = load_boxes(boxdir / f"{path.stem}.txt", w, h)["RBC"]
        if not truth:
            continue
        label = "PLT" if cls == "PLATELET" else cls
        seg = segment_classical(rgb, label=label)
        verdicts = judge(rgb, seg, label, HAND_ONLY)
        idx, x = rbc_features(rgb, seg, learned_pool(seg, verdicts, HAND_ONLY))
        for i, row in zip(idx, x):
            xs.append(row)
            ys.append(max(box_iou(seg.cells[i].box, t) for t in truth) >= 0.7)
            img.append(k)
        if not idx:  # the image still counts for sprites per image
            xs.append(np.full(x.shape[1], np.nan))
            ys.append(False)
            img.append(k)
    return np.array(xs), np.array(ys), np.array(img)


def fit(
    x: np.ndarray, y: np.ndarray, features: tuple[str, ...] = FEATURES, units: int = 16, alpha: float = 1e-2
) -> OutlineModel:
    """Standardised ReLU perceptron (`units` hidden units, L2 penalty `alpha`; scikit-learn, seeded) as an
    OutlineModel on `features`."""
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    sc = StandardScaler().fit(x)
    mlp = MLPClassifier((units,), alpha=alpha, max_iter=2000, random_state=0).fit(sc.transform(x), y)
    (w1, w2), (b1, b2) = mlp.coefs_, mlp.intercepts_
    return OutlineModel(sc.mean_, sc.scale_, w1, b1, w2[:, 0], float(b2[0]), features)


def table(model: OutlineModel, x: np.ndarray, y: np.ndarray, n_images: int) -> None:
    """Precision and kept sprites per image at a range of thresholds."""
    p = model.prob(x)
    for thr in (0.0, 0.5, 0.7, 0.8, 0.85, 0.88, 0.9, 0.92, 0.94):
        keep = p >= thr
        print(f"threshold {thr:.2f}: precision {y[keep].mean():.4f}, per image {keep.sum() / n_images:.3f}")


def training_args(
    doc: str, weights: Path, extra: Callable[[argparse.ArgumentParser], None] | None = None
) -> tuple[argparse.Namespace, list[Path], Path]:
    """(--sample/--cache/--check/--write arguments and those `extra` adds, the tuning-half images with OI-PBC
    boxes, the boxes folder) of a training script (this one and train_wbc_refine.py); the report half is never
    listed."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--sample", type=Path, default=Path(os.environ.get("NATURALIZE_SAMPLE", "../shared/pbc-sample")))
    ap.add_argument("--cache", type=Path, default=None, help="training rows to reuse (written when absent)")
    ap.add_argument("--check", action="store_true", help="fit on half the tuning images, score the other half")
    ap.add_argument("--write", action="store_true", help=f"fit on the whole tuning half and write {weights.name}")
    if extra is not None:
        extra(ap)
    args = ap.parse_args()
    release, boxdir = args.sample / "PBC_dataset_normal_DIB", args.sample / "oi-pbc-boxes"
    images = sorted(p for p in release.glob("*/*.jpg") if (boxdir / f"{p.stem}.txt").exists())
    if not images:
        raise SystemExit(f"error: no images with OI-PBC boxes under {args.sample} (pass --sample DIR)")
    return args, halves(images)["tuning"], boxdir


def main() -> None:
    args, tuning, boxdir = training_args(__doc__ or "", WEIGHTS)

    def rows() -> dict[str, np.ndarray]:
        x, y, img = collect(tuning, boxdir)
        return {"x": x, "y": y, "img": img}

    d = cached_rows(args.cache, code_digest(*ROWS_CODE), rows)
    x, y, img = d["x"], d["y"], d["img"]
    real = ~np.isnan(x).any(axis=1)
    n_img = len(np.unique(img))
    print(f"{int(real.sum())} pooled RBCs on {n_img} tuning images, {y[real].mean():.4f} match a box")
    if args.check:
        a = np.random.default_rng(0).permutation(n_img)[: n_img // 2]
        in_a = np.isin(img, np.unique(img)[a])
        model = fit(x[real & in_a], y[real & in_a])
        print("== fitted on sub-half A, scored on sub-half B")
        table(model, x[real & ~in_a], y[real & ~in_a], len(np.unique(img[~in_a])))
        print("== scored on sub-half A (the fit's own rows)")
        table(model, x[real & in_a], y[real & in_a], len(np.unique(img[in_a])))
    if args.write:
        model = fit(x[real], y[real])
        write_text(WEIGHTS, model.to_json())
        print(f"wrote {WEIGHTS}")
        table(model, x[real], y[real], n_img)


if __name__ == "__main__":
    main()
