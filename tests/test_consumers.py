"""Compose outputs as other tools read them: pycocotools (COCO, COCOeval) and torchvision's CocoDetection, on one OUT
holding every scene, one of them made in two shards (formats.md, "Reading them with other tools")."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from naturalize.compose.annotate import CATEGORIES
from naturalize.compose.params import ComposeParams
from naturalize.compose.run import compose_class
from naturalize.testing.boxbank import make_box_bank, pick_images


@pytest.fixture(scope="module")
def out(sample_release: Path, sample_boxes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One OUT: 6 PMY transplant images in two shards, 4 SNE matched, 4 LY paper, from 5 PMY, 3 LY, 3 SNE images."""
    images = pick_images(sample_release, sample_boxes, {"PMY": 5, "LY": 3, "SNE": 3})
    bank = make_box_bank(sample_release, sample_boxes, images, tmp_path_factory.mktemp("bank"))
    out = tmp_path_factory.mktemp("out")
    for shard in ((1, 2), (2, 2)):
        compose_class(bank, "PMY", 6, out, params=ComposeParams(), shard=shard, workers=1, progress=False)
    compose_class(bank, "SNE", 4, out, params=ComposeParams(scene="matched"), workers=1, progress=False)
    compose_class(bank, "LY", 4, out, params=ComposeParams(scene="paper"), workers=1, progress=False)
    return out


def _quiet_coco(path: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def test_pycocotools_reads_ids_categories_and_files_as_written(out: Path) -> None:
    coco = _quiet_coco(out / "annotations.json")
    images, anns = coco.dataset["images"], coco.dataset["annotations"]
    assert [im["id"] for im in images] == list(range(1, 15))
    assert [a["id"] for a in anns] == list(range(1, len(anns) + 1))
    assert [(c["id"], c["name"]) for c in coco.dataset["categories"]] == list(enumerate(CATEGORIES, start=1))
    scenes = [json.loads(line)["scene"] for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert scenes == ["paper"] * 4 + ["transplant"] * 6 + ["matched"] * 4  # LY, PMY, SNE
    for im in images:
        with Image.open(out / im["file_name"]) as f:
            assert f.size == (im["width"], im["height"])
    for a in anns:
        mask = coco.annToMask(a)
        ys, xs = np.nonzero(mask)
        assert a["iscrowd"] == 0 and a["area"] == len(xs) > 0
        assert a["bbox"] == [xs.min(), ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1]  # x, y, w, h: the mask's box


def test_cocoeval_of_the_annotations_against_themselves_is_ap_1(out: Path) -> None:
    """The sanity check a detection user runs first (a crowd flag, for one, lowers it: COCOeval ignores such cells)."""
    coco = _quiet_coco(out / "annotations.json")
    detections = [dict(a, score=1.0) for a in coco.dataset["annotations"]]
    for kind in ("bbox", "segm"):
        with contextlib.redirect_stdout(io.StringIO()):
            ev = COCOeval(coco, coco.loadRes(detections), kind)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        assert ev.stats[0] == pytest.approx(1.0) and ev.stats[1] == pytest.approx(1.0), kind


def test_torchvision_loads_every_item_with_masks_of_the_images_size(out: Path) -> None:
    datasets = pytest.importorskip("torchvision.datasets")
    with contextlib.redirect_stdout(io.StringIO()):
        ds = datasets.CocoDetection(str(out), str(out / "annotations.json"))
    wrapped = datasets.wrap_dataset_for_transforms_v2(ds, target_keys=("boxes", "labels", "masks", "image_id"))
    assert len(wrapped) == 14
    for i in range(len(wrapped)):
        image, target = wrapped[i]
        masks = target["masks"].numpy()
        assert masks.shape[1:] == (image.height, image.width) and len(target["labels"]) == len(masks) > 0
        for mask, box in zip(masks, target["boxes"].tolist()):
            ys, xs = np.nonzero(mask)
            assert box == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]  # XYXY: the mask's box
