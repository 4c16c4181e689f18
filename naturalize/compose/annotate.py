"""Per-image records (provenance + instance masks) and the run files built from them.

In: a Composite and the Library it came from. Out: one JSON-ready record per image (file, seed, class,
index, background and every cell: sprite id, source image, kind, position, transform, stain gain,
visible box, area and COCO RLE mask). The run files are written from journal entries (`journal_entry`):
a worker serialises the image's manifest line (the record without masks, compact JSON with sorted keys)
and its COCO annotations there, so the end of a run only fills in ids and joins text (`coco_text`: the
standard COCO instance-segmentation file). Both are written from templates; the tests check them
against json.dumps of the same records.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from naturalize.classes import CLASSES
from naturalize.compose.core import Composite
from naturalize.compose.library import Library, SpriteSet

#: COCO categories: the 11 classes (the white-cell classes and PLT for platelets) then RBC; ids from 1.
CATEGORIES: tuple[str, ...] = CLASSES + ("RBC",)
CATEGORY_ID: dict[str, int] = {name: i for i, name in enumerate(CATEGORIES, start=1)}
#: Compact JSON, as every run file is written (with sorted keys).
JSON_SEPARATORS = (",", ":")
INFO = {"description": "Naturalize synthetic PBC composites", "version": "1"}


def label_rles(labels: np.ndarray, n: int) -> list[tuple[str, list[int], int] | None]:
    """Per label 1..n of an H x W label map: its COCO compressed RLE (counts string), box [x, y, w, h]
    and area, or None when no pixel has it. The map's column-major runs are found once, grouped by label,
    and handed to pycocotools (which also gives boxes and areas)."""
    H, W = labels.shape
    total = H * W
    flat = cv2.transpose(labels).ravel()  # column-major order, as COCO counts
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate(([0], change))
    order = np.argsort(flat[starts], kind="stable")  # runs grouped by label, in image order within one
    cuts = np.searchsorted(flat[starts][order], np.arange(1, n + 2)).tolist()
    edges = np.empty((len(starts), 2), np.int64)
    edges[:, 0], edges[:, 1] = starts[order], np.append(change, total)[order]
    steps = np.diff(edges.ravel(), prepend=0)  # each run's length and the gap before it
    found, uncompressed = [], []
    for label in range(n):
        lo, hi = cuts[label], cuts[label + 1]
        if lo < hi:  # counts: zeros before the first run, its length, zeros to the next run, ...
            tail = total - int(edges[hi - 1, 1])
            counts = np.append(steps[2 * lo : 2 * hi], tail) if tail else steps[2 * lo : 2 * hi].copy()
            counts[0] = edges[lo, 0]
            found.append(label)
            uncompressed.append({"size": [H, W], "counts": counts})
    out: list[tuple[str, list[int], int] | None] = [None] * n
    if found:
        rles = mask_utils.frPyObjects(uncompressed, H, W)
        boxes = mask_utils.toBbox(rles).astype(int).tolist()
        # pycocotools' area() fails on 256 or more RLEs at once (its result starts as uint8): at most 255 a call
        areas = [a for k in range(0, len(rles), 255) for a in mask_utils.area(rles[k : k + 255]).tolist()]
        for label, rle, box, area in zip(found, rles, boxes, areas):
            out[label] = (rle["counts"].decode("ascii"), box, area)
    return out


def _sprite_set(lib: Library, role: str) -> SpriteSet:
    if role == "kept":  # a cell the transplant scene's donor image kept (scenes.Donors)
        return lib.scene.kept
    return {"centre": lib.centre, "WBC": lib.centre, "RBC": lib.rbc, "PLT": lib.plt}[role]


def background_record(lib: Library, plate: int) -> dict:
    """What the image was built on: the plate's id and source image; for a transplant, also the removed
    white cell's sprite id (the donor's kept cells are among the image's cells, kind RBC / PLT)."""
    row = lib.plate_rows[plate]
    out = {"id": row.background_id, "source": row.source}
    removed = getattr(lib.scene, "removed", None)
    if removed is not None:
        out["removed"] = removed[plate]
    return out


def image_record(comp: Composite, lib: Library, file: str, seed: int, index: int) -> dict:
    """The record of one composite (see module doc); cells in paint order, masks of visible pixels."""
    H, W = comp.image.shape[:2]
    cells = []
    for c, vis in zip(comp.cells, label_rles(comp.labels, len(comp.cells))):
        row = _sprite_set(lib, c.role).rows[c.index]
        kind = lib.centre_kind if c.role == "centre" else (row.kind if c.role == "kept" else c.role)
        cell = {
            "kind": kind,
            "category": row.label if kind == "WBC" and row.label else kind,
            "centre": c.role == "centre",
            "sprite_id": row.sprite_id,
            "source": row.source,
            "x": c.x,
            "y": c.y,
            "w": int(c.mask.shape[1]),
            "h": int(c.mask.shape[0]),
            "transform": c.transform.as_dict(),
            "stain_gain_rgb": [round(g, 4) for g in c.gain[::-1]],
        }
        if c.warp is not None:  # white-cell variety (variety.py): only when switched on
            cell["warp"] = c.warp
        if c.focus is not None:
            cell["focus"] = c.focus
        if vis is not None:
            cell["rle"], cell["bbox"], cell["area"] = vis
        cells.append(cell)
    return {
        "file": file,
        "class": lib.cls,
        "seed": seed,
        "index": index,
        "width": W,
        "height": H,
        "scene": getattr(lib.scene, "name", "paper"),
        "background": background_record(lib, comp.plate),
        "cells": cells,
    }


#: obj -> compact JSON text with sorted keys (one encoder for all calls: json.dumps would build one per call).
_dumps = json.JSONEncoder(sort_keys=True, separators=JSON_SEPARATORS).encode
#: A str as JSON text (what _dumps writes for it); Python bools as JSON.
_q = encode_basestring_ascii
_JSON_BOOL = {True: "true", False: "false"}


def _cell_text(c: dict) -> str:
    """_dumps of a record's cell without its mask, from a template (keys sorted, compact)."""
    t = c["transform"]
    head = f'{{"area":{c["area"]},"bbox":[{",".join(map(str, c["bbox"]))}],' if "area" in c else "{"
    return (
        f'{head}"category":{_q(c["category"])},"centre":{_JSON_BOOL[c["centre"]]},'
        + (f'"focus":{c["focus"]!r},' if "focus" in c else "")
        + f'"h":{c["h"]},"kind":{_q(c["kind"])},"source":{_q(c["source"])},"sprite_id":{_q(c["sprite_id"])},'
        f'"stain_gain_rgb":[{",".join(map(repr, c["stain_gain_rgb"]))}],"transform":{{"angle":{t["angle"]!r},'
        f'"flip":{_JSON_BOOL[t["flip"]]},"rot90":{t["rot90"]},"scale":{t["scale"]!r}}},"w":{c["w"]},'
        + (f'"warp":{c["warp"]},' if "warp" in c else "")
        + f'"x":{c["x"]},"y":{c["y"]}}}'
    )


def manifest_text(record: dict) -> str:
    """The record's manifest line: the record without its masks as compact JSON with sorted keys, from a
    template (a worker writes one per image; 3x faster than json; tested equal)."""
    return (
        f'{{"background":{_dumps(record["background"])},'
        f'"cells":[{",".join(map(_cell_text, record["cells"]))}],"class":{_q(record["class"])},'
        f'"file":{_q(record["file"])},"height":{record["height"]},"index":{record["index"]},'
        f'"scene":{_q(record["scene"])},"seed":{record["seed"]},"width":{record["width"]}}}'
    )


def coco_categories() -> list[dict]:
    """The fixed COCO categories (ids from 1 in CATEGORIES order)."""
    return [
        {"id": CATEGORY_ID[n], "name": n, "supercategory": "RBC" if n == "RBC" else ("PLT" if n == "PLT" else "WBC")}
        for n in CATEGORIES
    ]


def coco_template(record: dict) -> tuple[str, int]:
    """The COCO annotations of the record's visible cells (category, bbox, area, iscrowd 0, RLE
    segmentation) as one JSON text with printf slots where the ids go, and their number:
    `template % (a, i, a + 1, i, ...)` is them as annotations a, a + 1, ... of image i. Written from a
    template (keys in sorted order, compact; json.dumps costs 4x more; tested equal)."""
    size = f'"size":[{record["height"]},{record["width"]}]'
    anns = [
        f'{{"area":{c["area"]},"bbox":[{",".join(map(str, c["bbox"]))}],'
        f'"category_id":{CATEGORY_ID[c["category"]]},"id":%d,"image_id":%d,"iscrowd":0,'
        f'"segmentation":{{"counts":{_q(c["rle"]).replace("%", "%%")},{size}}}}}'
        for c in record["cells"]
        if "rle" in c
    ]
    return ",".join(anns), len(anns)


def journal_entry(record: dict) -> dict:
    """What a run's journal keeps of an image: the keys that identify it, its manifest line and its COCO
    annotations (`coco_template`: "coco" and "n_anns"), already serialised."""
    template, n = coco_template(record)
    return {
        "class": record["class"],
        "seed": record["seed"],
        "index": record["index"],
        "file": record["file"],
        "width": record["width"],
        "height": record["height"],
        "manifest": manifest_text(record),
        "coco": template,
        "n_anns": n,
    }


def coco_text(entries: list[dict]) -> str:
    """annotations.json of the journal entries (in the given order; image and annotation ids from 1),
    compact JSON with sorted keys."""
    images, anns = [], []
    next_id = 1
    for image_id, e in enumerate(entries, start=1):
        images.append(f'{{"file_name":{_q(e["file"])},"height":{e["height"]},"id":{image_id},"width":{e["width"]}}}')
        n = e["n_anns"]
        if n:
            ids = [image_id] * (2 * n)
            ids[::2] = range(next_id, next_id + n)
            anns.append(e["coco"] % tuple(ids))
            next_id += n
    return (
        f'{{"annotations":[{",".join(anns)}],"categories":{_dumps(coco_categories())},'
        f'"images":[{",".join(images)}],"info":{_dumps(INFO)}}}'
    )
