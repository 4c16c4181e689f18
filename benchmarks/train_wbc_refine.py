"""Train the white-cell mask refinement model (naturalize/segment/refine.py) on the tuning half of the annotated sample.

Usage:
    python benchmarks/train_wbc_refine.py [--sample DIR] [--cache CANDIDATES.npz] [--check] [--write]
                                          [--halvings N] [--first-halving I] [--units U] [--alpha A]
                                          [--flips F] [--boundary GROUPS] [--listwise] [--epochs E]
                                          [--class-margins C=M,...]

Every tuning-half image with exactly one OI-PBC white-cell box is segmented by the classical backend without the
refinement; the white cell whose box fits the annotated one best gives one row per candidate mask
(`refine.CANDIDATES`): its `refine.FEATURES` and the IoU of its full-resolution box with the annotated box. The
features hold the image's class. A standardised one-hidden-layer perceptron (scikit-learn MLPClassifier, `--units`
ReLU units (16), L2 penalty `--alpha` (0.01), seeded) learns whether a candidate's IoU is >= 0.8. With `--flips F`
(2-4) every image is also segmented mirrored left-right, up-down and both (the first F of FLIPS; the box mirrored
with it), which gives the perceptron F times the rows; the check still scores each image only as it is, and never by
a model fitted on one of its mirror images. `--check` fits on one seeded half of the tuning images and scores the
other, both ways, over `--halvings` seeded halvings (5, seeds from `--first-halving`, 0; halving i is the same for
every model, so two models' figures are paired), and prints per class how many images reach IoU >= 0.8 with the mask
alone, refined at a range of margins, and with the best candidate; the refinement is used for the classes it helped
there, and the pooled held-out figure with that class list (mask alone for the other classes) is the one a new model
or candidate set is compared on. It also prints each class's best margin on the halvings scored (the first of the
most hits, when that beats the mask alone); `--class-margins BA=0.0,LY=0.3,...` fixes such margins instead (chosen on
other halvings): the listed classes are refined, each at its margin, the others keep the mask, and `--write` stores
them with the weights. `--write` also fits on the whole tuning half and writes
naturalize/segment/wbc_refine.json (the weights and those classes). `--boundary edge,rel,...` (check only) adds
image evidence at each candidate's border (naturalize/segment/border.py's groups) to the features; a cache holds
every group. `--listwise` fits the same perceptron shape on a listwise target instead (torch, seeded, one CPU
thread, full batch: softmax over a cell's candidates, maximising the mass on those with IoU >= 0.8; AdamW, weight
decay `--alpha`, `--epochs` epochs); it is stored and run like the other (numpy at segmentation time: the sigmoid of
its score keeps the candidates' order). The report half is never read. A `--cache` records the digest of the code
that made its rows (train_rbc_outline.ROWS_CODE and this script); one made by other code is refused.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from segment_quality import load_boxes  # benchmarks/ is the script's folder
from tqdm import tqdm
from train_rbc_outline import ROWS_CODE, cached_rows, fit, training_args

from naturalize.classes import WBC_CLASSES
from naturalize.codeversion import code_digest
from naturalize.fsio import write_text
from naturalize.segment.border import COLUMNS, border_features
from naturalize.segment.border import columns as border_columns
from naturalize.segment.cells import box_iou
from naturalize.segment.classical import ClassicalParams, _upscale, segment_classical
from naturalize.segment.outline import OutlineModel
from naturalize.segment.refine import CANDIDATES, FEATURES, WEIGHTS, RefineInput, Refiner, border_maps, choose

Extra = Callable[[list[np.ndarray], RefineInput, tuple[slice, slice]], np.ndarray]
Fit = Callable[[np.ndarray, np.ndarray, tuple[str, ...], int, float], OutlineModel]

BASE = ClassicalParams(wbc_refine=False)
MARGINS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3)
#: Column of `held_out`'s rows holding the hits refined at margin 0 (after images and mask-alone hits).
AT_MARGIN_0 = 2 + MARGINS.index(0.0)
FLIPS = ((False, False), (True, False), (False, True), (True, True))  # (left-right, up-down) mirrorings


def flipped(rgb: np.ndarray, box: tuple[float, float, float, float], t: int) -> tuple[np.ndarray, tuple]:
    """(image, box) mirrored by FLIPS[t] (left-right, up-down)."""
    lr, ud = FLIPS[t]
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = box
    if lr:
        rgb, x0, x1 = rgb[:, ::-1], w - x1, w - x0
    if ud:
        rgb, y0, y1 = rgb[::-1], h - y1, h - y0
    return np.ascontiguousarray(rgb), (x0, y0, x1, y1)


def collect(
    images: list[Path], boxdir: Path, flips: tuple[int, ...] = (0,), extra: Extra | None = None
) -> dict[str, np.ndarray]:
    """Candidate rows of the single-WBC images, each seen mirrored the ways `flips` index in FLIPS (0: as it is;
    an image whose unmirrored white cell is not found is left out): x (N, F), iou (N,), img (N,) image index,
    cls (N,) class, flip (N,) index into FLIPS, and with `extra` (candidates, maps, window -> columns) xb (N, E)."""
    xs, xbs, ious, img, cls_, flip = [], [], [], [], [], []
    for k, path in enumerate(tqdm(images, desc="candidates", unit="img")):
        cls = path.stem.split("_")[0]
        rgb0 = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        h, w = rgb0.shape[:2]
        truth0 = load_boxes(boxdir / f"{path.stem}.txt", w, h)["WBC"]
        if len(truth0) != 1:
            continue
        f = BASE.work_size / min(h, w)
        small = (max(8, round(h * f)), max(8, round(w * f)))
        for t in flips:
            rgb, truth = flipped(rgb0, truth0[0], t)
            trace: list = []
            segment_classical(rgb, BASE, trace=trace, label=cls)
            best: tuple[float, np.ndarray, list[float], tuple] | None = None
            for _i, sl, cands, feats, x in trace:
                row_iou = []
                for c in cands:
                    m = np.zeros(small, bool)
                    m[sl] = c
                    box = _upscale(m, (h, w))[1]
                    row_iou.append(box_iou(box, truth) if box else 0.0)
                if best is None or row_iou[0] > best[0]:
                    best = (row_iou[0], feats, row_iou, (cands, x, sl))
            if best is None or best[0] < 0.3:  # no white cell on the annotated one: nothing to refine
                if t == 0:
                    break
                continue
            xs += list(best[1])
            if extra is not None:
                xbs += list(extra(*best[3]))
            ious += best[2]
            img += [k] * len(CANDIDATES)
            cls_ += [cls] * len(CANDIDATES)
            flip += [t] * len(CANDIDATES)
    arrays = {"x": xs, "iou": ious, "img": img, "cls": cls_, "flip": flip} | ({"xb": xbs} if extra else {})
    return {key: np.array(v) for key, v in arrays.items()}


def all_borders(cands: list[np.ndarray], x: RefineInput, sl: tuple[slice, slice]) -> np.ndarray:
    """Every border group's columns (border.COLUMNS) of one cell's candidates (crops of window `sl`)."""
    return border_features(cands, border_maps(x, sl))


def fit_listwise(
    x: np.ndarray,
    y: np.ndarray,
    features: tuple[str, ...] = FEATURES,
    units: int = 16,
    alpha: float = 1e-2,
    epochs: int = 600,
) -> OutlineModel:
    """Standardised ReLU perceptron (`units` hidden units) on a listwise target, as an OutlineModel on `features`:
    the rows come in blocks of len(CANDIDATES), one cell each; the loss is minus the log of the softmax mass on a
    cell's candidates with `y` (cells without one are left out); AdamW (lr 0.01, weight decay `alpha`), `epochs`
    full-batch steps, torch seeded on one CPU thread (same rows -> same weights; the caller's torch threads and
    random state are restored)."""
    import torch

    k = len(CANDIDATES)
    mu, sd = x.mean(0), x.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    xt = torch.tensor((x - mu) / sd, dtype=torch.float32).reshape(-1, k, x.shape[1])
    yt = torch.tensor(np.asarray(y, bool).reshape(-1, k))
    keep = yt.any(1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):  # seeded here, the caller's generator left as it was
            torch.manual_seed(0)
            w1, b1, w2, b2 = _listwise_weights(xt[keep], yt[keep], units, alpha, epochs)
    finally:
        torch.set_num_threads(threads)
    return OutlineModel(mu, sd, w1.T.copy(), b1, w2[0].copy(), float(b2[0]), features)


def _listwise_weights(xt: Any, yt: Any, units: int, alpha: float, epochs: int) -> list[np.ndarray]:
    """(w1 (H, F), b1, w2 (1, H), b2) of a ReLU perceptron trained on cells' candidates xt (C, K, F) and their
    targets yt (C, K) by fit_listwise's loss (the caller seeds torch)."""
    import torch

    net = torch.nn.Sequential(torch.nn.Linear(xt.shape[-1], units), torch.nn.ReLU(), torch.nn.Linear(units, 1))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=alpha)
    for _ in range(epochs):
        opt.zero_grad()
        s = net(xt).squeeze(-1)
        loss = -(torch.logsumexp(s.masked_fill(~yt, -1e9), 1) - torch.logsumexp(s, 1)).mean()
        loss.backward()
        opt.step()
    return [t.detach().double().numpy() for t in net.parameters()]


def held_out(
    d: dict[str, np.ndarray],
    splits: int = 5,
    units: int = 16,
    alpha: float = 1e-2,
    features: tuple[str, ...] = FEATURES,
    first: int = 0,
    fitter: Fit = fit,
) -> dict[str, np.ndarray]:
    """Per class (and "all"): (images, hits with the mask alone, hits refined at each margin, hits of the best
    candidate) summed over `splits` seeded halvings (seeds `first`...) of the tuning images, each half scored by
    a model on `features` (the columns of d["x"]) fitted by `fitter` on the other (every image is scored `splits` times,
    never by a model that saw it or its mirror images; the images are scored as they are, unmirrored)."""
    y = d["iou"] >= 0.8
    plain = d["flip"] == 0
    ids = np.unique(d["img"])
    k = len(CANDIDATES)
    out: dict[str, np.ndarray] = {}
    for seed in tqdm(range(first, first + splits), desc="halvings", unit="halving"):
        a = np.isin(d["img"], ids[np.random.default_rng(seed).permutation(len(ids))[: len(ids) // 2]])
        for fit_rows, test_rows in ((a, ~a), (~a, a)):
            model = fitter(d["x"][fit_rows], y[fit_rows], features, units, alpha)
            for i in np.unique(d["img"][test_rows]):
                r = np.flatnonzero((d["img"] == i) & plain)
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
    return tuple(sorted(c for c, v in table.items() if c != "all" and v[AT_MARGIN_0] > v[1]))


def pooled(table: dict[str, np.ndarray], classes: tuple[str, ...]) -> tuple[int, int]:
    """(hits, images) held out over every class when `classes` are refined at margin 0 and the others keep the mask."""
    return pooled_at(table, dict.fromkeys(classes, 0.0))


def best_margins(table: dict[str, np.ndarray]) -> dict[str, float]:
    """Per class, the margin (of MARGINS) with the most held-out hits, the first of ties, where that beats the mask
    alone; classes where none does are left out (they keep the mask)."""
    out = {}
    for c, v in sorted(table.items()):
        hits = v[2 : 2 + len(MARGINS)]
        if c != "all" and hits.max() > v[1]:
            out[c] = MARGINS[int(np.argmax(hits))]
    return out


def pooled_at(table: dict[str, np.ndarray], margins: dict[str, float]) -> tuple[int, int]:
    """(hits, images) held out over every class when each class of `margins` is refined at its margin and the
    others keep the mask."""
    hits = sum(int(v[2 + MARGINS.index(margins[c])] if c in margins else v[1]) for c, v in table.items() if c != "all")
    return hits, int(table["all"][0])


def parse_margins(text: str) -> dict[str, float]:
    """`--class-margins`' "BA=0.0,LY=0.3" as a dict; ValueError for an unknown class or a margin not in MARGINS."""
    out = {}
    for item in (t for t in text.split(",") if t):
        c, _, m = item.partition("=")
        if c not in WBC_CLASSES:
            raise ValueError(f"{c!r} is not a white-cell class {list(WBC_CLASSES)}")
        try:
            out[c] = float(m)
        except ValueError:
            raise ValueError(f"{item!r} is not CLASS=MARGIN") from None
        if out[c] not in MARGINS:
            raise ValueError(f"margin {m} of {c} is not one of {list(MARGINS)}")
    return out


def model_args(ap: argparse.ArgumentParser) -> None:
    """This script's own options: the held-out check's halvings and the perceptron's size and penalty."""
    ap.add_argument("--halvings", type=int, default=5, help="seeded halvings of the held-out check (5)")
    ap.add_argument("--first-halving", type=int, default=0, help="seed of the check's first halving (0)")
    ap.add_argument("--units", type=int, default=16, help="hidden units of the perceptron (16)")
    ap.add_argument("--alpha", type=float, default=1e-2, help="L2 penalty (weight decay with --listwise) (0.01)")
    ap.add_argument("--flips", type=int, default=1, help="train on each image mirrored 1-4 ways (1: as it is)")
    ap.add_argument("--boundary", default="", help="check with these segment/border.py groups added (edge,rel,...)")
    ap.add_argument("--listwise", action="store_true", help="fit on the listwise target (torch) instead")
    ap.add_argument("--epochs", type=int, default=600, help="full-batch epochs of --listwise (600)")
    ap.add_argument("--class-margins", default="", help="refine these classes only, each at its margin (BA=0.0,...)")


def main() -> None:
    args, tuning, boxdir = training_args(__doc__ or "", WEIGHTS, model_args)
    if args.halvings < 1 or args.units < 1 or args.epochs < 1 or args.alpha < 0 or not 1 <= args.flips <= len(FLIPS):
        raise SystemExit(
            f"error: --halvings, --units and --epochs must be >= 1, --alpha >= 0, --flips 1 to {len(FLIPS)}"
        )
    groups = tuple(g for g in args.boundary.split(",") if g)
    try:
        margins = parse_margins(args.class_margins)
    except ValueError as e:
        raise SystemExit(f"error: --class-margins: {e}") from None
    try:
        cols = [COLUMNS.index(n) for n in border_columns(groups)]
    except ValueError as e:
        raise SystemExit(f"error: --boundary: {e}") from None
    if groups and args.write:
        raise SystemExit("error: --boundary is a check only (the refinement reads refine.FEATURES): drop --write")
    d = cached_rows(
        args.cache,
        code_digest(*ROWS_CODE, "train_wbc_refine"),
        lambda: collect(tuning, boxdir, tuple(range(args.flips)), all_borders),
    )
    if int(d["flip"].max()) + 1 < args.flips:
        held = int(d["flip"].max()) + 1
        raise SystemExit(f"error: {args.cache} holds {held} mirrorings, not {args.flips}: delete it")
    d = {key: v[d["flip"] < args.flips] for key, v in d.items()}
    if d["x"].shape[1] != len(FEATURES):
        raise SystemExit(f"error: {args.cache} holds {d['x'].shape[1]} features, not {len(FEATURES)}: delete it")
    if groups and d.get("xb", np.zeros((0, 0))).shape[1] != len(COLUMNS):
        raise SystemExit(f"error: {args.cache} holds no (or other) border features: pass another --cache")
    features = FEATURES + tuple(COLUMNS[c] for c in cols)
    if groups:
        d["x"] = np.hstack([d["x"], d["xb"][:, cols]])
    y = d["iou"] >= 0.8
    n_img = len(np.unique(d["img"]))
    print(
        f"{len(y)} candidates of {n_img} single-WBC tuning images x {args.flips} mirrorings, "
        f"{y.mean():.4f} at IoU >= 0.8"
    )
    if not (args.check or args.write):
        return
    fitter: Fit = partial(fit_listwise, epochs=args.epochs) if args.listwise else fit
    table = held_out(d, args.halvings, args.units, args.alpha, features, args.first_halving, fitter)
    print_table(table)
    best = best_margins(table)
    print(f"best margins on these halvings: {','.join(f'{c}={m}' for c, m in best.items())}")
    if margins:
        classes = tuple(sorted(margins))
        print(f"refined classes (given, each at its margin): {args.class_margins}")
        hits, n = pooled_at(table, margins)
    else:
        classes = refined_classes(table)
        print(f"refined classes (held-out gain at margin 0): {', '.join(classes)}")
        hits, n = pooled(table, classes)
    last = args.first_halving + args.halvings - 1
    print(
        f"held out, refining those classes only: {hits / n:.2%} ({hits} of {n} scorings, "
        f"halvings {args.first_halving}-{last}{', boundary ' + ','.join(groups) if groups else ''}"
        f"{', listwise' if args.listwise else ''}, units {args.units}, alpha {args.alpha})"
    )
    if args.write:
        model = fitter(d["x"], y, FEATURES, args.units, args.alpha)
        write_text(WEIGHTS, Refiner(model, classes, tuple(sorted(margins.items()))).to_json())
        print(f"wrote {WEIGHTS}")


if __name__ == "__main__":
    main()
