"""The demo report's sheets say what they show: each Naturalize image under its own source, sprites at one
scale, and how many of the removed images are shown (a drawn bank: no data, no segmenter)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from naturalize.bank import Bank, BankWriter
from naturalize.demo.pipeline import contact_sheets
from naturalize.demo.sheets import LABEL_W, segmentation_sheets
from naturalize.testing.drawnbank import drawn_entry, drawn_scene


def _provenance(png: Path) -> dict:
    with Image.open(png) as im:
        return json.loads(im.text["provenance"])


def _drawn_bank(tmp_path: Path, removed: int) -> Path:
    """A bank of 3 kept PMY images and `removed` SNE images curation dropped (multi_wbc), each source image written
    under tmp_path/pbc as the bank's root names it."""
    pbc = tmp_path / "pbc"
    writer = BankWriter.open(tmp_path / "bank", {"backend": "drawn", "parameters": {}, "input": "drawn"})
    for cls, n, keep in (("PMY", 3, True), ("SNE", removed, False)):
        for i in range(n):
            entry = drawn_entry(cls, i, 0)
            writer.add(entry if keep else replace(entry, flags=("multi_wbc",), keep=False))
            (pbc / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(drawn_scene(cls, i, 0, 4, 1)[1]).save(pbc / entry.source)
    meta = json.loads((tmp_path / "bank" / "bank.json").read_text())
    (tmp_path / "bank" / "bank.json").write_text(json.dumps({**meta, "root": str(pbc)}))
    return tmp_path / "bank"


def test_the_removed_images_sheet_says_how_many_of_them_it_shows(tmp_path: Path) -> None:
    sheets = segmentation_sheets(_drawn_bank(tmp_path, removed=8), tmp_path / "figures", n=6)
    meta = _provenance(sheets["rejected"])
    assert sum(len(v) for v in meta["rows"].values()) == 6
    assert "6 of 8 shown" in meta["title"]  # it showed 6 of the 8 removed images as if they were all


def test_the_sprite_sheet_draws_every_sprite_at_one_scale(tmp_path: Path) -> None:
    """Each sprite was fitted to its thumbnail alone: a white cell shrunk to a red cell's size, a platelet kept."""
    bank = Bank.open(_drawn_bank(tmp_path, removed=0))
    png = segmentation_sheets(bank.root, tmp_path / "figures", n=6)["sprites"]
    rows = _provenance(png)["rows"]
    with Image.open(png) as im:
        sheet = np.asarray(im.convert("L"))[:, LABEL_W:] < 250  # sprite pixels (shown on white)
    cell = (sheet.shape[0] - 22 - 4) // 3  # a 22 px title line, then 3 rows of thumbnails (+ 4 px gaps)
    drawn, true = [], []
    for r, what in enumerate(("red cells", "white cells", "platelets")):  # the sheet's rows, top to bottom
        (paths,) = [v for k, v in rows.items() if k.startswith(what)]
        with Image.open(png.parent / paths[0]) as sprite:  # named relative to the sheet's folder
            true.append(max(sprite.size))
        band = sheet[22 + 4 + r * cell : 22 + 4 + (r + 1) * cell - 4]
        ys, xs = np.nonzero(band[:, :cell])  # the row's first thumbnail
        drawn.append(max(ys.max() - ys.min(), xs.max() - xs.min()) + 1)
    ratios = [d / t for d, t in zip(drawn, true)]
    assert max(ratios) / min(ratios) < 1.15, (drawn, true)


def test_each_naturalize_image_stands_under_the_image_its_white_cell_came_from(tmp_path: Path) -> None:
    """The top row held the class's first 6 training images, captioned as the sources of the images below: none
    of them was."""
    pbc, dataset = tmp_path / "pbc", tmp_path / "dataset"
    (pbc / "ig").mkdir(parents=True)
    (dataset / "synthetic" / "PMY").mkdir(parents=True)
    (dataset / "train" / "PMY").mkdir(parents=True)
    rgb = np.full((40, 40, 3), 200, np.uint8)
    records, syn = [], []
    for i in range(4):
        Image.fromarray(rgb).save(pbc / "ig" / f"PMY_{i}.jpg")
        Image.fromarray(rgb).save(dataset / "train" / "PMY" / f"PMY_{i}.jpg")  # the class's training images
        out = dataset / "synthetic" / "PMY" / f"PMY_syn_0_{i}.jpg"
        Image.fromarray(rgb).save(out)
        syn.append(out)
        cells = [
            {"centre": False, "source": f"ig/PMY_{i}.jpg"},  # a donor's red cell
            {"centre": True, "source": f"ig/PMY_{3 - i}.jpg"},  # the pasted white cell
        ]
        records.append({"file": f"PMY/PMY_syn_0_{i}.jpg", "class": "PMY", "cells": cells})
    (dataset / "synthetic" / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    ((caption, png),) = contact_sheets(tmp_path / "figures", dataset, {"PMY": syn}, "real", pbc)
    rows = _provenance(png)["rows"]
    assert rows["1"] == [f"../dataset/synthetic/PMY/{p.name}" for p in syn]  # relative to the sheet's folder
    assert rows["0"] == [f"../pbc/ig/PMY_{3 - i}.jpg" for i in range(4)]
    assert "white cell" in caption


def test_a_sheet_is_the_same_bytes_wherever_the_demo_lies(tmp_path: Path) -> None:
    """The demo's sheets named their files by absolute path: two demos of the same seed in two folders differed in
    every sheet (and in report.html, which embeds them), and a mailed report carried the user's home path. They
    now name them relative to the sheet's folder."""
    made = []
    for where in ("one", "two"):
        bank = _drawn_bank(tmp_path / where, removed=1)
        sheets = segmentation_sheets(bank, tmp_path / where / "figures", n=6)
        made.append({k: p.read_bytes() for k, p in sheets.items()})
        for png in sheets.values():
            for paths in _provenance(png)["rows"].values():
                assert all(not Path(p).is_absolute() and (png.parent / p).is_file() for p in paths), paths
    assert made[0] == made[1] and set(made[0]) >= {"plates", "sprites"}
