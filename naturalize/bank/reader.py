"""Reading a sprite bank: `Bank.open` checks bank.json and the CSVs against it, then serves rows and pixels.

In: a bank folder written by BankWriter (naturalize/bank/writer.py). Out: a Bank (its meta, sprite, background
and curation rows; `select` the usable sprites; `load_sprite`, `load_mask`, `load_background` their pixels).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from PIL import Image

from naturalize.bank.files import (
    BACKGROUND_FIELDS,
    CSV_FILES,
    INDEX_FIELDS,
    OPTIONAL_FIELDS,
    PASS,
    BackgroundRow,
    SpriteRow,
    coerce_row,
)
from naturalize.bank.masks import decode_mask
from naturalize.bank.stamps import committed_text, file_record, read_bank_meta
from naturalize.fsio import UserError


def _read_rows(path: Path, text: str, cls, required: list[str]) -> list:
    """Rows of one bank CSV (its committed `text`; empty: no rows) as `cls` objects."""
    if not text:
        return []
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = set(required) - set(reader.fieldnames or [])
    if missing:
        raise UserError(f"{path}: missing columns {sorted(missing)}; rebuild the bank with `naturalize segment`")
    # A row cut short by an interrupted run lacks required values: it is not part of the bank (optional
    # columns left empty, as in rows written before the quality gate, take their defaults).
    return [coerce_row(cls, r) for r in reader if all(r.get(k) is not None for k in required)]


class Bank:
    """Read access to a sprite bank. `Bank.open(path)` validates the format version."""

    def __init__(
        self,
        root: Path,
        meta: dict,
        sprites: list[SpriteRow],
        backgrounds: list[BackgroundRow],
        curation: list[dict[str, str]],
    ):
        self.root = root
        self.meta = meta
        self.sprites = sprites
        self.backgrounds = backgrounds
        self.curation = curation
        self._source: tuple[str, np.ndarray] | None = None  # the last source image read (load_sprite)

    @classmethod
    def open(cls, path: str | Path) -> Bank:
        """Read a bank; UserError when bank.json is missing or damaged, or a CSV no longer matches it."""
        root = Path(path)
        meta = read_bank_meta(root)
        text = {name: committed_text(root, name, file_record(meta, name)) for name in CSV_FILES}
        curation = _read_dicts(text["curation.csv"])
        done = {r["source"] for r in curation}
        required = [f for f in INDEX_FIELDS if f not in OPTIONAL_FIELDS]  # older banks: passed, PNG files
        sprites = [
            s for s in _read_rows(root / "index.csv", text["index.csv"], SpriteRow, required) if s.source in done
        ]
        backgrounds = [
            b
            for b in _read_rows(root / "backgrounds.csv", text["backgrounds.csv"], BackgroundRow, BACKGROUND_FIELDS)
            if b.source in done
        ]
        return cls(root, meta, sprites, backgrounds, curation)

    def select(self, kind: str, label: str | None = None) -> list[SpriteRow]:
        """Sprites of one kind (and WBC label) that passed the quality gate (stored as PNG files), whole."""
        return [
            s
            for s in self.sprites
            if s.kind == kind and (label is None or s.label == label) and s.reason == PASS and not s.touches_border
        ]

    def load_sprite(self, row: SpriteRow) -> np.ndarray:
        """RGBA uint8 array (h, w, 4) of one sprite: its PNG file, or for a mask-only row the cell cut from its
        source image (UserError naming the file when that cannot be read)."""
        if row.has_png:
            with Image.open(self.root / row.relpath) as im:
                return np.asarray(im.convert("RGBA"))
        rgb = self._source_rgb(row.source)
        rgba = np.empty((row.y1 - row.y0, row.x1 - row.x0, 4), np.uint8)
        rgba[:, :, :3] = rgb[row.y0 : row.y1, row.x0 : row.x1]
        rgba[:, :, 3] = np.where(self.load_mask(row), 255, 0).astype(np.uint8)
        return rgba

    def load_mask(self, row: SpriteRow, threshold: int = 128) -> np.ndarray:
        """Bool mask (h, w) of one sprite in its box: decoded from index.csv, or alpha >= threshold of its PNG file
        (no source image needed); UserError when the PNG cannot be read."""
        if not row.has_png:
            return decode_mask(row.mask, row.y1 - row.y0, row.x1 - row.x0)
        import cv2

        a = cv2.imread(str(self.root / row.relpath), cv2.IMREAD_UNCHANGED)
        if a is None or a.ndim != 3 or a.shape[2] != 4:
            raise UserError(f"cannot read sprite {self.root / row.relpath}; rebuild the bank with `naturalize segment`")
        return a[:, :, 3] >= threshold

    def _source_rgb(self, source: str) -> np.ndarray:
        """RGB uint8 array of one source image (bank.json `root` + source; the last one read is kept)."""
        if self._source is not None and self._source[0] == source:
            return self._source[1]
        root = self.meta.get("root")
        path = Path(root) / source if root else Path(source)  # every bank segment writes records its root
        from naturalize.decode import load_image

        try:  # decoded as segment decoded it (naturalize.decode), so the mask lies on the same pixels
            rgb = load_image(path, None)
        except UserError as e:
            raise UserError(
                f"{e}: the source image of a rejected sprite of {self.root}; keep the PBC "
                f"folder the bank was cut from in place (bank.json `root`) or rebuild the bank with "
                f"`naturalize segment`"
            ) from None
        self._source = (source, rgb)
        return rgb

    def load_background(self, row: BackgroundRow) -> np.ndarray:
        """RGB uint8 array (H, W, 3) of one background plate."""
        with Image.open(self.root / row.relpath) as im:
            return np.asarray(im.convert("RGB"))


def _read_dicts(text: str) -> list[dict[str, str]]:
    """The complete rows of a CSV text as dicts."""
    return [r for r in csv.DictReader(io.StringIO(text, newline="")) if None not in r.values()]
