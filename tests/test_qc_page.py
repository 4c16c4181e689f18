"""The QC page of `naturalize segment` as a user reads it: every class among the outlined sources, every
sprite's label whole and inside its own cell (drawn images: no data needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from naturalize.bank import Bank
from naturalize.segment.gate import REASONS
from naturalize.segment.qc import LABEL_H, LEGEND, LEGEND_H, OUTLINE, TILE, grid, source_sheet


def test_the_outlined_sources_show_every_class_of_an_11_class_bank(tmp_path: Path) -> None:
    from naturalize.classes import CLASSES
    from naturalize.drawn import write_drawn_release
    from naturalize.segment.run import segment

    tree = write_drawn_release(tmp_path / "drawn", 1, progress=False)
    segment(tree, tmp_path / "bank", backend="classical", workers=1, progress=False, echo=lambda m: None)
    bank = Bank.open(tmp_path / "bank")
    assert len({r["label"] for r in bank.curation}) == len(CLASSES) == 11
    _, shown = source_sheet(bank, tree)
    by_source = {r["source"]: r["label"] for r in bank.curation}
    # 8 images showed 8 of the 11 classes: PLT, PMY and SNE (two augmented classes) were never outlined
    assert {by_source[s] for s in shown} == set(CLASSES)


def test_the_outlined_sources_sheet_carries_its_colour_legend(tmp_path: Path) -> None:
    """sources.png is opened on its own (the PNG, not the HTML page): its top strip shows a swatch of every outline
    colour (the meanings were only in the HTML page's heading)."""
    from naturalize.drawn import write_drawn_release
    from naturalize.segment.run import segment

    tree = write_drawn_release(tmp_path / "drawn", 1, progress=False)
    segment(tree, tmp_path / "bank", backend="classical", workers=1, progress=False, echo=lambda m: None)
    sheet, shown = source_sheet(Bank.open(tmp_path / "bank"), tree)
    strip = sheet[:LEGEND_H]
    assert set(LEGEND) == set(OUTLINE)
    for key, colour in OUTLINE.items():
        swatch = np.all(strip == np.array(colour, np.uint8), axis=-1)
        assert swatch.sum() >= 100, key  # a filled swatch, not a stray outline pixel
    assert sheet.shape[0] == LEGEND_H + -(-len(shown) // 4) * (300 + LABEL_H)


def test_a_long_reason_label_is_drawn_whole_and_stays_in_its_cell() -> None:
    tile = np.full((TILE, TILE, 3), 128, np.uint8)
    blank = np.full((TILE, TILE, 3), 255, np.uint8)
    longest = max((f"{kind} {r}" for kind in ("RBC", "WBC", "PLT") for r in REASONS), key=len)

    def labelled(text: str) -> np.ndarray:
        return grid([tile, blank], 2, TILE, labels=[text, ""])

    for text in (longest, "PLT wbc_contact", "RBC on_platelet"):
        # the last letter is drawn (it was cut at 14 characters: "PLT wbc_contac")
        assert not np.array_equal(labelled(text), labelled(text[:-1])), text
        # and no ink crosses into the next cell's label
        assert (labelled(text)[TILE:, TILE:] == 255).all(), text
