"""Contact sheet for the demo report: a row of real images above a row of synthetic ones (PNG)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw, PngImagePlugin

from naturalize.fsio import atomic_open


def pair_sheet(top: Sequence[Path], bottom: Sequence[Path], out: Path, title: str, thumb: int = 160) -> Path:
    """Write `out`: thumbnails of `top` (first row) and `bottom` (second row) under a title line.

    The PNG's text chunk 'provenance' lists every source file (JSON). Returns `out`.
    """
    cols = max(len(top), len(bottom), 1)
    head = 22
    sheet = Image.new("RGB", (cols * (thumb + 4) + 4, head + 2 * (thumb + 4) + 4), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((6, 5), title, fill=(0, 0, 0))
    for row, paths in enumerate((top, bottom)):
        for col, p in enumerate(paths):
            with Image.open(p) as im:
                im = im.convert("RGB")
                im.thumbnail((thumb, thumb))
                sheet.paste(im, (4 + col * (thumb + 4), head + 4 + row * (thumb + 4)))
    info = PngImagePlugin.PngInfo()
    info.add_text("provenance", json.dumps({"top": [str(p) for p in top], "bottom": [str(p) for p in bottom],
                                            "made_by": "naturalize.demo.sheets.pair_sheet"}))
    with atomic_open(out, "wb") as f:
        sheet.save(f, format="PNG", pnginfo=info)
    return out
