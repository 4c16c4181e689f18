"""A small sprite bank cut from real PBC images with their OI-PBC boxes (test and benchmark helper).

In: the release folder (PBC_dataset_normal_DIB), the OI-PBC boxes folder, which images to use.
Out: a bank in the documented format (naturalize/bank/): bank.json, index.csv, backgrounds.csv,
curation.csv, sprites/<kind>/[<label>/]<id>.png, backgrounds/<id>.png.

Each box gives one sprite: a tight crop whose alpha is the largest Otsu component of the saturation
inside the box (holes filled); each image gives one background with the union of its boxes inpainted.
This is not the product's segmenter, only a cheap stand-in so compose can be tested on real pixels.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy import ndimage

from naturalize.bank import BACKGROUND_FIELDS, CURATION_FIELDS, FORMAT_VERSION, INDEX_FIELDS
from naturalize.classes import CLASSES, class_of_prefix
from naturalize.decode import load_bgr

#: OI-PBC box class ids: the 11 classes in CLASSES order with RBC inserted at 10.
BOX_CLASS = ("BA", "BNE", "EO", "ERB", "LY", "MMY", "MO", "MY", "PLT", "PMY", "RBC", "SNE")


def pick_images(release: Path, boxes: Path, per_class: dict[str, int]) -> list[Path]:
    """The first `per_class[c]` images (sorted names) of each class that have a boxes file."""
    out: list[Path] = []
    for cls, k in per_class.items():
        found = []
        for p in sorted(release.glob("*/*.jpg")):
            if class_of_prefix(p.name) == cls and (boxes / f"{p.stem}.txt").is_file():
                found.append(p)
                if len(found) == k:
                    break
        out += found
    return out


def _cell_mask(dist: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """Bool mask (box-sized) of the cell in one box: Otsu on the colour distance to the plasma, biggest
    component, holes filled."""
    d = cv2.GaussianBlur(dist[y0:y1, x0:x1], (3, 3), 0)
    _, m = cv2.threshold(d, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    m = cv2.morphologyEx(m, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)))
    n, lab, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=4)
    if n > 1:
        m = lab == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    m = ndimage.binary_fill_holes(m)
    h, w = m.shape
    if m.sum() < 0.3 * h * w:  # Otsu failed: the ellipse inscribed in the box
        e = np.zeros((h, w), np.uint8)
        cv2.ellipse(e, (w // 2, h // 2), (max(1, w // 2 - 1), max(1, h // 2 - 1)), 0, 0, 360, 1, -1)
        m = e.astype(bool)
    return m


def _read_boxes(path: Path, w: int, h: int, prefix_cls: str) -> list[tuple[str, str, int, int, int, int]]:
    """(kind, label, x0, y0, x1, y1) per box; the WBC nearest the centre takes the file-name class."""
    rows: list[list[Any]] = []
    for line in path.read_text().split("\n"):
        if not line.strip():
            continue
        c, *xywh = line.split()
        cx, cy, bw, bh = (float(v) * s for v, s in zip(xywh, (w, h, w, h)))
        x0, y0 = max(0, int(round(cx - bw / 2))), max(0, int(round(cy - bh / 2)))
        x1, y1 = min(w, int(round(cx + bw / 2))), min(h, int(round(cy + bh / 2)))
        if x1 - x0 < 4 or y1 - y0 < 4:
            continue
        name = BOX_CLASS[int(c)]
        kind = name if name in ("RBC", "PLT") else "WBC"
        rows.append([kind, name if kind == "WBC" else "", x0, y0, x1, y1])
    wbcs = [r for r in rows if r[0] == "WBC"]
    if wbcs and prefix_cls != "PLT":
        centre = min(wbcs, key=lambda r: ((r[2] + r[4]) / 2 - w / 2) ** 2 + ((r[3] + r[5]) / 2 - h / 2) ** 2)
        centre[1] = prefix_cls
    return [tuple(r) for r in rows]  # type: ignore[misc]


def make_box_bank(release: Path, boxes: Path, images: list[Path], out: Path) -> Path:
    """Write a bank for `images` (paths inside `release`) into `out`; returns `out`."""
    out.mkdir(parents=True, exist_ok=True)
    index, backs, cur = [], [], []
    counts: dict[str, int] = {}
    for path in images:
        bgr = load_bgr(path)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        source = path.relative_to(release).as_posix()
        prefix_cls = class_of_prefix(path.name) or ""
        hole = np.zeros((h, w), np.uint8)
        cells = _read_boxes(boxes / f"{path.stem}.txt", w, h, prefix_cls)
        inside = np.zeros((h, w), bool)
        for _, _, x0, y0, x1, y1 in cells:
            inside[y0:y1, x0:x1] = True
        lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
        flat = lab.reshape(-1, 3)
        bright = flat[flat[:, 0] >= np.percentile(flat[:, 0], 85)]
        plasma = np.median(lab[~inside] if (~inside).sum() > 2000 else bright, axis=0)
        dist = np.clip(np.linalg.norm(lab - plasma, axis=2) * 4, 0, 255).astype(np.uint8)
        n = {"WBC": 0, "RBC": 0, "PLT": 0}
        for k, (kind, label, x0, y0, x1, y1) in enumerate(cells):
            m = _cell_mask(dist, x0, y0, x1, y1)
            ys, xs = np.nonzero(m)
            bx0, by0, bx1, by1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
            m = m[by0:by1, bx0:bx1]
            gx0, gy0 = x0 + bx0, y0 + by0
            rgba = np.dstack([rgb[gy0 : gy0 + m.shape[0], gx0 : gx0 + m.shape[1]], m.astype(np.uint8) * 255])
            sid = f"{path.stem}-{kind.lower()}{k:02d}"
            sub = out / "sprites" / kind / label if label else out / "sprites" / kind
            sub.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(sub / f"{sid}.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
            border = gx0 <= 0 or gy0 <= 0 or gx0 + m.shape[1] >= w or gy0 + m.shape[0] >= h
            index.append(
                [sid, kind, label, source, gx0, gy0, gx0 + m.shape[1], gy0 + m.shape[0], int(m.sum()), 1.0, int(border)]
            )
            hole[gy0 : gy0 + m.shape[0], gx0 : gx0 + m.shape[1]] |= m.astype(np.uint8)
            n[kind] += 1
            key = f"{kind}/{label}" if label else kind
            counts[key] = counts.get(key, 0) + 1
        hole = cv2.dilate(hole, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9)))
        small = cv2.resize(bgr, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
        small_hole = cv2.resize(hole * 255, (w // 4, h // 4), interpolation=cv2.INTER_AREA) > 0
        filled = cv2.inpaint(small, small_hole.astype(np.uint8), 3, cv2.INPAINT_TELEA)
        up = cv2.resize(filled, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float32)
        soft = np.maximum(cv2.GaussianBlur(hole.astype(np.float32), (0, 0), 2.0), hole)[:, :, None]
        plate = np.clip(np.rint(bgr * (1 - soft) + up * soft), 0, 255).astype(np.uint8)
        (out / "backgrounds").mkdir(exist_ok=True)
        cv2.imwrite(str(out / "backgrounds" / f"{path.stem}.png"), plate)
        backs.append([path.stem, source, prefix_cls, w, h])
        cur.append([source, prefix_cls, n["WBC"], n["RBC"], n["PLT"], "", 1])
    for name, header, rows in (
        ("index.csv", INDEX_FIELDS, index),
        ("backgrounds.csv", BACKGROUND_FIELDS, backs),
        ("curation.csv", CURATION_FIELDS, cur),
    ):
        with (out / name).open("w", newline="", encoding="utf-8") as f:
            wr = csv.writer(f)
            wr.writerow(header)
            wr.writerows(rows)
    meta = {
        "format_version": FORMAT_VERSION,
        "backend": "oi-pbc-boxes",
        "parameters": {},
        "counts": counts,
        "root": str(release.resolve()),
        "classes": list(CLASSES),
    }
    (out / "bank.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out
