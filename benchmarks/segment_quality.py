"""Quality of the classical segmentation backend and the quality gate against the OI-PBC boxes.

Usage:
    python benchmarks/segment_quality.py [--sample DIR] [--limit N] [--halves tuning,report] [--out bench-out/segment]

Protocol (issue 12): the 3,320 annotated sample images are split per class (file-name prefix), seeded,
into a tuning half and a report half (`halves`); thresholds are tuned on the tuning half only and the
targets are judged on the report half. Every figure is given per class and overall, for each half:
  WBC   share of images with exactly one annotated WBC box whose WBC box has IoU >= 0.80 (>= 96 %, >= 90 % per class)
  RBC   share of RBC sprites the gate keeps that match an unmatched annotated RBC box at IoU >= 0.7 (>= 97 %) and
        kept RBC sprites per image (>= 4); images without RBC boxes left out; also the backend's `usable` alone
  flags multi_wbc recall on images with 2+ annotated WBCs (>= 92 %), false flags on single-WBC images (<= 2 %)
  leaks kept RBC / PLT sprites lying on an annotated white cell (box IoU >= 0.3): nucleated cells (target 0)
  shape white cells the gate refuses for their shape (GateRules.wbc_min_solidity), of those it would keep otherwise
  cost  ms per image of segment_classical + the gate (wall and CPU), one process
Writes OUT/results.json, OUT/hand_check.png (200 random kept RBC and 100 random kept PLT sprites of the
report half, for the hand check) and OUT/failures.png (sampled failures: annotated boxes thin, found
cells thick, grey = not usable).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from naturalize.fsio import write_bytes, write_text
from naturalize.pngmeta import png_bytes
from naturalize.segment.cells import box_iou, crop_sprite
from naturalize.segment.classical import segment_classical
from naturalize.segment.qc import grid
from naturalize.testing import sample_home

RBC_ID, PLT_ID = 10, 8
COLOURS = {"RBC": (220, 30, 30), "WBC": (30, 60, 230), "PLT": (20, 170, 20)}


def load_boxes(txt: Path, w: int, h: int) -> dict[str, list[tuple[float, float, float, float]]]:
    """OI-PBC YOLO boxes as pixel (x0, y0, x1, y1) per kind."""
    out: dict[str, list] = {"RBC": [], "WBC": [], "PLT": []}
    for line in txt.read_text().split("\n"):
        parts = line.split()
        if len(parts) != 5:
            continue
        c = int(parts[0])
        cx, cy, bw, bh = (float(v) for v in parts[1:])
        kind = "RBC" if c == RBC_ID else "PLT" if c == PLT_ID else "WBC"
        out[kind].append(((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h))
    return out


def match_count(found: list[tuple], truth: list[tuple], thr: float) -> int:
    """Greedy one-to-one matching by IoU; how many `found` boxes match a `truth` box at IoU >= thr."""
    if not found or not truth:
        return 0
    iou = np.array([[box_iou(f, t) for t in truth] for f in found])
    n = 0
    while True:
        i, j = np.unravel_index(np.argmax(iou), iou.shape)
        if iou[i, j] < thr:
            return n
        n += 1
        iou[i, :] = -1
        iou[:, j] = -1


def primary_wbc(seg, w: int, h: int):
    """The white cell nearest the image centre (PBC crops are centred on it), or None."""
    wbcs = seg.of_kind("WBC")
    if not wbcs:
        return None

    def d(c):
        x0, y0, x1, y1 = c.box
        return ((x0 + x1) / 2 - w / 2) ** 2 + ((y0 + y1) / 2 - h / 2) ** 2

    return min(wbcs, key=d)


def draw(rgb: np.ndarray, seg, truth: dict) -> np.ndarray:
    img = rgb.copy()
    for kind, boxes in truth.items():
        for b in boxes:
            cv2.rectangle(img, (int(b[0]), int(b[1])), (int(b[2]) - 1, int(b[3]) - 1), COLOURS[kind], 1)
    for c in seg.cells:
        cnts, _ = cv2.findContours(c.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        col = COLOURS[c.kind] if c.usable or c.kind == "WBC" else (120, 120, 120)
        cv2.drawContours(img, cnts, -1, col, 2 if c.usable else 1)
    return img


def halves(images: list[Path], seed: int = 0) -> dict[str, list[Path]]:
    """The honest protocol: per class (file-name prefix), a seeded shuffle cut in two; thresholds are tuned
    on "tuning" only, targets are judged on "report"."""
    by_class: dict[str, list[Path]] = {}
    for p in sorted(images):
        by_class.setdefault(p.stem.split("_")[0], []).append(p)
    out: dict[str, list[Path]] = {"tuning": [], "report": []}
    for k, (_cls, paths) in enumerate(sorted(by_class.items())):
        order = np.random.default_rng([seed, k]).permutation(len(paths))
        cut = len(paths) // 2
        out["tuning"] += [paths[i] for i in sorted(order[:cut])]
        out["report"] += [paths[i] for i in sorted(order[cut:])]
    return out


def wbc_on(box: tuple, wbc_boxes: list[tuple]) -> bool:
    """A sprite box lies on an annotated white cell (IoU >= 0.3)."""
    return any(box_iou(box, b) >= 0.3 for b in wbc_boxes)


def score(images: list[Path], boxdir: Path, rng: np.random.Generator, hand: dict[str, list], fails: list) -> dict:
    """Segment and score `images` (see the module doc); fills `hand` (random kept RBC/PLT crops, reservoir)
    and `fails` (failure drawings). Returns the summary, per class and overall."""
    from collections import defaultdict

    from naturalize.segment.gate import judge

    tot: dict[str, dict] = defaultdict(lambda: defaultdict(float))
    seen = {"RBC": 0, "PLT": 0}
    n_fail = 0
    for path in tqdm(images, desc="segment", unit="img"):
        cls = path.stem.split("_")[0]
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        t0, c0 = time.perf_counter(), time.process_time()
        label = "PLT" if cls == "PLATELET" else cls
        seg = segment_classical(rgb, label=label)
        verdicts = judge(rgb, seg, label)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        truth = load_boxes(boxdir / f"{path.stem}.txt", w, h)
        kept = [c for c, v in zip(seg.cells, verdicts) if v.reason == "ok"]
        for key in (cls, "all"):
            t = tot[key]
            t["images"] += 1
            t["seconds"] += dt
            t["cpu"] += dc
            if len(truth["WBC"]) == 1:
                c = primary_wbc(seg, w, h)
                iou = box_iou(c.box, truth["WBC"][0]) if c is not None else 0.0
                t["wbc_n"] += 1
                t["wbc_ok"] += iou >= 0.8
                t["single_flag"] += "multi_wbc" in seg.flags
            elif len(truth["WBC"]) >= 2:
                t["multi_n"] += 1
                t["multi_hit"] += "multi_wbc" in seg.flags
            if truth["RBC"]:
                use = [c.box for c in seg.of_kind("RBC", usable_only=True)]
                gated = [c.box for c in kept if c.kind == "RBC"]
                t["rbc_images"] += 1
                t["rbc_usable"] += len(use)
                t["rbc_match"] += match_count(use, truth["RBC"], 0.7)
                t["rbc_kept"] += len(gated)
                t["rbc_kept_match"] += match_count(gated, truth["RBC"], 0.7)
            wbc_reasons = [v.reason for c, v in zip(seg.cells, verdicts) if c.kind == "WBC"]
            t["wbc_whole"] += sum(r in ("ok", "shape") for r in wbc_reasons)
            t["wbc_shape"] += wbc_reasons.count("shape")
            for c in kept:
                if c.kind in ("RBC", "PLT"):
                    t["kept_" + c.kind] += 1
                    t["nucleated_" + c.kind] += wbc_on(c.box, truth["WBC"])
        for c in kept:  # reservoir samples for the hand check
            if c.kind in hand:
                seen[c.kind] += 1
                cap = 200 if c.kind == "RBC" else 100
                j = int(rng.integers(seen[c.kind]))
                item = (crop_sprite(rgb, c.mask), f"{cls} {c.area}")
                if len(hand[c.kind]) < cap:
                    hand[c.kind].append(item)
                elif j < cap:
                    hand[c.kind][j] = item
        iou_bad = len(truth["WBC"]) == 1 and (
            primary_wbc(seg, w, h) is None or box_iou(primary_wbc(seg, w, h).box, truth["WBC"][0]) < 0.8
        )
        if iou_bad or ("multi_wbc" in seg.flags) != (len(truth["WBC"]) >= 2):
            n_fail += 1
            if len(fails) < 24:
                fails.append(draw(rgb, seg, truth))
            elif (j := int(rng.integers(n_fail))) < 24:
                fails[j] = draw(rgb, seg, truth)
    return {k: summarise(t) for k, t in sorted(tot.items())}


def summarise(t: dict) -> dict:
    """Rates of one group of images."""

    def rate(a: str, b: str) -> float | None:
        return round(t[a] / t[b], 4) if t[b] else None

    return {
        "images": int(t["images"]),
        "wbc_images": int(t["wbc_n"]),
        "wbc_iou80_rate": rate("wbc_ok", "wbc_n"),
        "rbc_precision_usable": rate("rbc_match", "rbc_usable"),
        "rbc_usable_per_image": rate("rbc_usable", "rbc_images"),
        "rbc_precision": rate("rbc_kept_match", "rbc_kept"),
        "rbc_per_image": rate("rbc_kept", "rbc_images"),
        "multi_wbc_images": int(t["multi_n"]),
        "multi_wbc_recall": rate("multi_hit", "multi_n"),
        "multi_wbc_false_rate": rate("single_flag", "wbc_n"),
        "kept_rbc_on_wbc_box": int(t["nucleated_RBC"]),
        "kept_plt_on_wbc_box": int(t["nucleated_PLT"]),
        "kept_plt": int(t["kept_PLT"]),
        "wbc_shape_refused": rate("wbc_shape", "wbc_whole"),
        "ms_per_image": round(1000 * t["seconds"] / max(1, t["images"]), 2),
        "cpu_ms_per_image": round(1000 * t["cpu"] / max(1, t["images"]), 2),
    }


def targets(r: dict) -> dict:
    """Issue 12's targets (judged on the report half)."""
    per_class = [v["wbc_iou80_rate"] for k, v in r.items() if k != "all" and v["wbc_iou80_rate"] is not None]
    a = {k: (v if v is not None else float("nan")) for k, v in r["all"].items()}
    return {
        "wbc_96": a["wbc_iou80_rate"] >= 0.96,
        "wbc_every_class_90": min(per_class) >= 0.90,
        "rbc_precision_97": a["rbc_precision"] >= 0.97,
        "rbc_per_image_4": a["rbc_per_image"] >= 4,
        "multi_recall_92": a["multi_wbc_recall"] >= 0.92,
        "multi_false_2": a["multi_wbc_false_rate"] <= 0.02,
        "no_kept_rbc_plt_on_wbc": a["kept_rbc_on_wbc_box"] + a["kept_plt_on_wbc_box"] == 0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sample", type=Path, default=sample_home())
    ap.add_argument("--limit", type=int, default=0, help="score N images of each half, spread evenly (0 = all)")
    ap.add_argument("--halves", default="tuning,report", help="which halves to score: tuning, report or both")
    ap.add_argument("--out", type=Path, default=Path("bench-out/segment"))
    args = ap.parse_args()
    release, boxdir = args.sample / "PBC_dataset_normal_DIB", args.sample / "oi-pbc-boxes"
    images = sorted(p for p in release.glob("*/*.jpg") if (boxdir / f"{p.stem}.txt").exists())
    if not images:
        raise SystemExit(f"error: no images with OI-PBC boxes under {args.sample} (pass --sample DIR)")
    split = halves(images)
    if args.limit:
        split = {k: [v[int(i * len(v) / args.limit)] for i in range(min(args.limit, len(v)))] for k, v in split.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    res, hand, fails = {}, {"RBC": [], "PLT": []}, []
    for half in args.halves.split(","):
        res[half] = score(split[half], boxdir, rng, hand if half == "report" else {}, fails)
    if "report" in res:
        res["targets_on_report_half"] = targets(res["report"])
    write_text(args.out / "results.json", json.dumps(res, indent=1))
    if hand["RBC"] or hand["PLT"]:
        from naturalize.segment.qc import titled

        width = 16 * 84
        sheet = [
            titled(
                f"{k}: {len(v)} random kept sprites (report half), true scale, source class and area",
                grid([t for t, _ in v], 16, 84, labels=[lab for _, lab in v], upscale=False),
                width,
            )
            for k, v in hand.items()
            if v
        ]
        made = {"made_by": "benchmarks/segment_quality.py", "half": "report", "seed": 0}
        write_bytes(args.out / "hand_check.png", png_bytes(np.vstack(sheet), {**made, "rows": list(hand)}))
    if fails:
        made = {"made_by": "benchmarks/segment_quality.py", "halves": args.halves}
        write_bytes(args.out / "failures.png", png_bytes(grid(fails, 4, 360, 363), {**made, "images": len(fails)}))
    cols = [
        "images",
        "wbc_iou80_rate",
        "rbc_precision",
        "rbc_per_image",
        "multi_wbc_recall",
        "multi_wbc_false_rate",
        "kept_rbc_on_wbc_box",
        "kept_plt_on_wbc_box",
        "wbc_shape_refused",
        "cpu_ms_per_image",
    ]
    for half, r in res.items():
        print(f"== {half}")
        if half.startswith("targets"):
            print(r)
            continue
        print("class " + " ".join(f"{c[:12]:>12s}" for c in cols))
        for k, v in r.items():
            print(f"{k:5s} " + " ".join(f"{str(v[c]):>12s}" for c in cols))


if __name__ == "__main__":
    main()
