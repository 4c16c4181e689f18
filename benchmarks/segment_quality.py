"""Quality and speed of the classical segmentation backend against the OI-PBC boxes.

Usage:
    python benchmarks/segment_quality.py [--sample DIR] [--limit N] [--out bench-out/segment]

Scores (issue 3's targets):
  WBC   share of images with exactly one annotated WBC box whose WBC sprite box has IoU >= 0.80 (target >= 95%)
  RBC   share of usable RBC sprites matching an unmatched annotated RBC box at IoU >= 0.7 (target >= 95%)
        and mean usable RBC sprites per image (target >= 4); images without RBC boxes left out
  flags multi_wbc recall on images with 2+ annotated WBCs (target >= 90%) and false-flag rate on
        single-WBC images (target <= 3%)
  speed images/s of segment_classical (decoded image in, Segmentation out, inpainting included), one process;
        also its CPU time per image (steadier than wall time on a shared machine)
Writes OUT/results.json, OUT/contact_sheet.png (16 backgrounds, 32 sprites per kind) and
OUT/failures.png (worst images: annotated boxes thin, found cells thick).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from naturalize.fsio import write_bytes, write_text
from naturalize.segment.cells import box_iou, crop_sprite
from naturalize.segment.classical import segment_classical

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


def grid(tiles: list[np.ndarray], cols: int, width: int, height: int | None = None, bg: int = 255) -> np.ndarray:
    """Tiles (RGB, or RGBA shown over a checkerboard) scaled into width x height cells, `cols` per row."""
    height = height or width
    rows = (len(tiles) + cols - 1) // cols
    out = np.full((max(1, rows) * height, cols * width, 3), bg, np.uint8)
    for k, t in enumerate(tiles):
        if t.shape[2] == 4:  # sprite: composite on a checkerboard so the alpha shows
            yy, xx = np.mgrid[: t.shape[0], : t.shape[1]]
            chk = np.where(((yy // 6 + xx // 6) % 2)[..., None] == 0, 235, 190).astype(np.float32)
            a = t[:, :, 3:4] / 255.0
            t = (t[:, :, :3] * a + chk * (1 - a)).astype(np.uint8)
        sc = min(width / t.shape[1], height / t.shape[0])
        t = cv2.resize(t, (max(1, int(t.shape[1] * sc)), max(1, int(t.shape[0] * sc))), interpolation=cv2.INTER_AREA)
        r, c = divmod(k, cols)
        out[r * height:r * height + t.shape[0], c * width:c * width + t.shape[1]] = t
    return out


def png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an RGB image."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return buf.tobytes()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sample", type=Path, default=Path(os.environ.get("NATURALIZE_SAMPLE", "../shared/pbc-sample")))
    ap.add_argument("--limit", type=int, default=0, help="score N images spread evenly over the sample (0 = all)")
    ap.add_argument("--out", type=Path, default=Path("bench-out/segment"))
    args = ap.parse_args()
    release, boxdir = args.sample / "PBC_dataset_normal_DIB", args.sample / "oi-pbc-boxes"
    images = sorted(p for p in release.glob("*/*.jpg") if (boxdir / f"{p.stem}.txt").exists())
    if not images:
        raise SystemExit(f"error: no images with OI-PBC boxes under {args.sample} (pass --sample DIR)")
    if args.limit and args.limit < len(images):
        images = [images[int(i * len(images) / args.limit)] for i in range(args.limit)]
    args.out.mkdir(parents=True, exist_ok=True)

    wbc_ok = wbc_n = 0
    rbc_usable = rbc_match = rbc_images = 0
    multi_n = multi_hit = single_n = single_flag = nowbc_n = nowbc_hit = 0
    seconds = cpu_seconds = 0.0
    per_image, bgs, sprites, tiles, n_fail = [], [], {"RBC": [], "WBC": [], "PLT": []}, [], 0
    rng = np.random.default_rng(0)
    for k, path in enumerate(tqdm(images, desc="segment", unit="img")):
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        t0, c0 = time.perf_counter(), time.process_time()
        seg = segment_classical(rgb)
        seconds += time.perf_counter() - t0
        cpu_seconds += time.process_time() - c0
        truth = load_boxes(boxdir / f"{path.stem}.txt", w, h)
        rec = {"image": path.name, "n_wbc_true": len(truth["WBC"]), "flags": list(seg.flags)}
        if len(truth["WBC"]) == 1:
            wbc_n += 1
            c = primary_wbc(seg, w, h)
            iou = box_iou(c.box, truth["WBC"][0]) if c is not None else 0.0
            wbc_ok += iou >= 0.8
            rec["wbc_iou"] = round(iou, 3)
            single_n += 1
            single_flag += "multi_wbc" in seg.flags
        elif len(truth["WBC"]) >= 2:
            multi_n += 1
            multi_hit += "multi_wbc" in seg.flags
        if not truth["WBC"]:
            nowbc_n += 1
            nowbc_hit += "no_wbc" in seg.flags
        if truth["RBC"]:
            use = [c.box for c in seg.of_kind("RBC", usable_only=True)]
            m = match_count(use, truth["RBC"], 0.7)
            rbc_images += 1
            rbc_usable += len(use)
            rbc_match += m
            rec.update(rbc_usable=len(use), rbc_match=m)
        per_image.append(rec)
        # contact sheet: 16 backgrounds and 32 sprites per kind, spread evenly over the scored images
        if k % max(1, len(images) // 16) == 0 and len(bgs) < 16:
            bgs.append(np.hstack([rgb, seg.background]))
        if k % max(1, len(images) // 32) == 0:
            for kind in sprites:
                usable = seg.of_kind(kind, usable_only=True)
                if usable and len(sprites[kind]) < 32:
                    sprites[kind].append(crop_sprite(rgb, usable[int(rng.integers(len(usable)))].mask))
        if rec.get("wbc_iou", 1.0) < 0.8 or rec.get("rbc_match", 0) < rec.get("rbc_usable", 0) or \
                ("multi_wbc" in seg.flags) != (len(truth["WBC"]) >= 2):
            n_fail += 1  # reservoir sample of 24 failure drawings over the whole run
            if len(tiles) < 24:
                tiles.append(draw(rgb, seg, truth))
            elif (j := int(rng.integers(n_fail))) < 24:
                tiles[j] = draw(rgb, seg, truth)
    n = len(images)
    res = {
        "images": n,
        "wbc_iou80_rate": wbc_ok / max(1, wbc_n), "wbc_images": wbc_n,
        "rbc_precision": rbc_match / max(1, rbc_usable), "rbc_usable_per_image": rbc_usable / max(1, rbc_images),
        "rbc_images": rbc_images,
        "multi_wbc_recall": multi_hit / max(1, multi_n), "multi_wbc_images": multi_n,
        "multi_wbc_false_rate": single_flag / max(1, single_n), "single_wbc_images": single_n,
        "no_wbc_recall": nowbc_hit / max(1, nowbc_n), "no_wbc_images": nowbc_n,
        "ms_per_image": 1000 * seconds / n, "images_per_s": n / seconds,
        "cpu_ms_per_image": 1000 * cpu_seconds / n,
    }
    res["targets_met"] = {
        "wbc": res["wbc_iou80_rate"] >= 0.95, "rbc_precision": res["rbc_precision"] >= 0.95,
        "rbc_per_image": res["rbc_usable_per_image"] >= 4, "multi_recall": res["multi_wbc_recall"] >= 0.90,
        "multi_false": res["multi_wbc_false_rate"] <= 0.03,
    }
    write_text(args.out / "results.json", json.dumps({"summary": res, "per_image": per_image}, indent=1))
    sheet = [grid(bgs, 2, 720, 363)] if bgs else []
    for kind in ("WBC", "RBC", "PLT"):
        if sprites[kind]:
            sheet.append(grid(sprites[kind], 16, 90))
    width = max(s.shape[1] for s in sheet)
    sheet = [np.pad(s, ((0, 8), (0, width - s.shape[1]), (0, 0)), constant_values=255) for s in sheet]
    write_bytes(args.out / "contact_sheet.png", png(np.vstack(sheet)))
    if tiles:
        write_bytes(args.out / "failures.png", png(grid(tiles, 4, 360, 363)))
    for k, v in res.items():
        print(f"{k:24s} {v}")


if __name__ == "__main__":
    main()
