"""Plain-dict forms of the compose run files, built the obvious way (json.dumps of dicts): what the
template writers of naturalize/compose/annotate.py must reproduce byte for byte.

In: per-image records (annotate.image_record). Out: the manifest line's dict, the COCO file's dict.
"""

from __future__ import annotations

from naturalize.compose.annotate import CATEGORY_ID, INFO, coco_categories


def manifest_entry(record: dict) -> dict:
    """The manifest line of a record as a dict: everything but the masks."""
    return record | {"cells": [{k: v for k, v in c.items() if k != "rle"} for c in record["cells"]]}


def coco(records: list[dict]) -> dict:
    """The COCO instance-segmentation dict the run files must hold for these records (image ids from 1)."""
    images: list[dict] = []
    anns: list[dict] = []
    for image_id, r in enumerate(records, start=1):
        images.append({"id": image_id, "file_name": r["file"], "width": r["width"], "height": r["height"]})
        for c in r["cells"]:
            if "rle" in c:
                anns.append(
                    {
                        "id": len(anns) + 1,
                        "image_id": image_id,
                        "category_id": CATEGORY_ID[c["category"]],
                        "bbox": c["bbox"],
                        "area": c["area"],
                        "iscrowd": 0,
                        "segmentation": {"size": [r["height"], r["width"]], "counts": c["rle"]},
                    }
                )
    return {"info": INFO, "images": images, "annotations": anns, "categories": coco_categories()}
