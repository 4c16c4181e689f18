"""Per-image records (provenance + instance masks) and the run files built from them.

In: a Composite and the Library it came from. Out: one JSON-ready record per image (file, seed, class,
index, background and every cell: sprite id, source image, kind, position, transform, stain gain,
visible box, area and COCO RLE mask). From a list of records: manifest.jsonl lines (the record without
masks) and a COCO instance-segmentation dict (annotations.json).

The run files of a large run are written from journal entries (`journal_entry`): a worker serialises the
image's manifest line and COCO annotations there, so the end of a run only concatenates text
(`coco_text`, byte-identical to `json.dumps(coco(records), sort_keys=True, separators=JSON_SEPARATORS)`).
"""

from __future__ import annotations

import json

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from naturalize.classes import CLASSES
from naturalize.compose.core import Composite, visible_masks
from naturalize.compose.library import Library, SpriteSet

#: COCO categories: the 11 classes (the white-cell classes and PLT for platelets) then RBC; ids from 1.
CATEGORIES: tuple[str, ...] = CLASSES + ("RBC",)
CATEGORY_ID: dict[str, int] = {name: i for i, name in enumerate(CATEGORIES, start=1)}
#: Compact JSON, as every run file is written (with sorted keys).
JSON_SEPARATORS = (",", ":")
INFO = {"description": "Naturalize synthetic PBC composites", "version": "1"}


def rle_encode(vis: np.ndarray, x0: int, y0: int, height: int, width: int) -> str:
    """COCO compressed RLE (counts string) of an image-sized mask that is `vis` (bool h x w) at (x0, y0)
    and empty elsewhere. Runs are found on vis alone (columns padded by one empty pixel above and below)
    and their starts mapped to column-major image positions."""
    h, w = vis.shape
    # one row per image column, padded by an empty pixel at both ends
    padded = cv2.copyMakeBorder(cv2.transpose(vis.view(np.uint8)), 0, 0, 1, 1, cv2.BORDER_CONSTANT, value=0)
    flat = padded.ravel()
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    col, row = np.divmod(change, h + 2)
    starts = (x0 + col) * height + (y0 - 1 + row)
    counts = np.diff(np.concatenate(([0], starts, [height * width]))).tolist()
    if counts[-1] == 0:  # the mask runs to the last pixel
        counts.pop()
    rle = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    return rle["counts"].decode("ascii")


def _sprite_set(lib: Library, role: str) -> SpriteSet:
    return {"centre": lib.centre, "WBC": lib.centre, "RBC": lib.rbc, "PLT": lib.plt}[role]


def image_record(comp: Composite, lib: Library, file: str, seed: int, index: int) -> dict:
    """The record of one composite (see module doc); cells in paint order, masks of visible pixels."""
    H, W = comp.image.shape[:2]
    plate = lib.plate_rows[comp.plate]
    cells = []
    for c, vis in zip(comp.cells, visible_masks(comp)):
        row = _sprite_set(lib, c.role).rows[c.index]
        kind = lib.centre_kind if c.role == "centre" else c.role
        cell = {
            "kind": kind,
            "category": row.label if kind == "WBC" and row.label else kind,
            "centre": c.role == "centre",
            "sprite_id": row.sprite_id,
            "source": row.source,
            "x": c.x, "y": c.y, "w": int(c.mask.shape[1]), "h": int(c.mask.shape[0]),
            "transform": c.transform.as_dict(),
            "stain_gain_rgb": [round(float(g), 4) for g in c.gain[::-1]],
        }
        if vis is not None:
            (x0, y0, _, _), m = vis
            bx, by, bw, bh = cv2.boundingRect(m.view(np.uint8))
            cell["bbox"] = [x0 + bx, y0 + by, bw, bh]
            cell["area"] = int(np.count_nonzero(m))
            cell["rle"] = rle_encode(m, x0, y0, H, W)
        cells.append(cell)
    return {"file": file, "class": lib.cls, "seed": seed, "index": index, "width": W, "height": H,
            "background": {"id": plate.background_id, "source": plate.source}, "cells": cells}


def manifest_entry(record: dict) -> dict:
    """The manifest line of a record: everything but the masks."""
    out = dict(record)
    out["cells"] = [{k: v for k, v in c.items() if k != "rle"} for c in record["cells"]]
    return out


#: obj -> compact JSON text with sorted keys (one encoder for all calls: json.dumps would build one per call).
_dumps = json.JSONEncoder(sort_keys=True, separators=JSON_SEPARATORS).encode


def coco_annotation(cell: dict, height: int, width: int) -> dict:
    """The COCO annotation of a record's visible cell, without its "id" and "image_id"."""
    return {"category_id": CATEGORY_ID[cell["category"]], "bbox": cell["bbox"], "area": cell["area"], "iscrowd": 0,
            "segmentation": {"size": [height, width], "counts": cell["rle"]}}


def coco_categories() -> list[dict]:
    """The fixed COCO categories (ids from 1 in CATEGORIES order)."""
    return [{"id": CATEGORY_ID[n], "name": n, "supercategory": "RBC" if n == "RBC" else ("PLT" if n == "PLT" else "WBC")}
            for n in CATEGORIES]


def coco(records: list[dict]) -> dict:
    """COCO instance-segmentation dict of the records (in the given order; image ids from 1)."""
    images, anns = [], []
    for image_id, r in enumerate(records, start=1):
        images.append({"id": image_id, "file_name": r["file"], "width": r["width"], "height": r["height"]})
        for c in r["cells"]:
            if "rle" in c:
                anns.append({"id": len(anns) + 1, "image_id": image_id, **coco_annotation(c, r["height"], r["width"])})
    return {"info": INFO, "images": images, "annotations": anns, "categories": coco_categories()}


def coco_parts(record: dict) -> list[str]:
    """The record's COCO annotations (`coco_annotation`) as JSON text cut where the ids go:
    [head, tail, head, tail, ...]; annotation number a of the file, on image number i, is
    head + f'"id":{a},"image_id":{i}' + tail. Written from a template (keys in sorted order, compact; a
    worker makes one per cell, json.dumps costs 4x more): the text `coco_text` joins equals json.dumps of
    `coco()` (tested)."""
    size = f'"size":[{record["height"]},{record["width"]}]'
    parts = []
    for c in record["cells"]:
        if "rle" in c:
            x, y, w, h = c["bbox"]
            parts.append(f'{{"area":{c["area"]},"bbox":[{x},{y},{w},{h}],"category_id":{CATEGORY_ID[c["category"]]},')
            parts.append(f',"iscrowd":0,"segmentation":{{"counts":{json.dumps(c["rle"])},{size}}}}}')
    return parts


def journal_entry(record: dict) -> dict:
    """What a run's journal keeps of an image: the keys that identify it, its manifest line and its COCO
    annotation parts (`coco_parts`), already serialised."""
    return {"class": record["class"], "seed": record["seed"], "index": record["index"], "file": record["file"],
            "width": record["width"], "height": record["height"],
            "manifest": _dumps(manifest_entry(record)), "coco": coco_parts(record)}


def coco_text(entries: list[dict]) -> str:
    """annotations.json of the journal entries (in the given order; image and annotation ids from 1): the
    text `json.dumps(coco(records), sort_keys=True, separators=JSON_SEPARATORS)` gives for their records."""
    images, anns = [], []
    for image_id, e in enumerate(entries, start=1):
        images.append(_dumps({"id": image_id, "file_name": e["file"], "width": e["width"], "height": e["height"]}))
        parts = e["coco"]
        for head, tail in zip(parts[::2], parts[1::2]):
            anns.append(f'{head}"id":{len(anns) + 1},"image_id":{image_id}{tail}')
    return (f'{{"annotations":[{",".join(anns)}],"categories":{_dumps(coco_categories())},'
            f'"images":[{",".join(images)}],"info":{_dumps(INFO)}}}')
