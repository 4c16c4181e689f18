"""Contact sheets for the demo report (PNG): labelled rows of thumbnails.

`grid_sheet` is the one drawing routine; `pair_sheet` (source images above Naturalize images) and
`segmentation_sheets` (what segmentation made of the training images, and what it rejected) use it.
Transparent sprites are shown on white. Every PNG's text chunk 'provenance' lists its source files, relative to the
PNG's folder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from naturalize.classes import CLASSES
from naturalize.fsio import atomic_open, temp_target
from naturalize.pngmeta import KEY, text

LABEL_W = 150  # width of the row-label column, pixels
#: The PNGs segmentation_sheets writes, by its keys.
SEGMENTATION_SHEETS = {
    "plates": "segmentation_plates.png",
    "sprites": "segmentation_sprites.png",
    "rejected": "segmentation_rejected.png",
}


def contact_sheet_name(cls: str) -> str:
    """The name of the demo's contact sheet of class `cls` (naturalize.demo.pipeline.contact_sheets)."""
    return f"sheet_{cls}.png"


def written_by_sheets(rel: str) -> bool:
    """Whether `rel`, a file's path inside the demo's figures folder, is a sheet the demo writes there (the
    segmentation sheets, a contact sheet per class) or the temporary file of one."""
    name = temp_target(rel) or rel
    return name in SEGMENTATION_SHEETS.values() or name in {contact_sheet_name(c) for c in CLASSES}


def grid_sheet(
    rows: Sequence[tuple[str, Sequence[Path]]], out: Path, title: str, thumb: int = 160, scale: float | None = None
) -> Path:
    """Write `out`: one row of thumbnails per (label, paths), the label left of its row, under a title line. Each
    image is fitted into thumb x thumb, or, with `scale`, resized by that one factor (sizes stay comparable)."""
    labelled = any(label for label, _ in rows)
    left = LABEL_W if labelled else 0
    cols = max([len(paths) for _, paths in rows] + [1])
    head = 22
    sheet = Image.new("RGB", (left + cols * (thumb + 4) + 4, head + len(rows) * (thumb + 4) + 4), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=14)
    draw.text((6, 3), title, fill=(0, 0, 0), font=font)
    for r, (label, paths) in enumerate(rows):
        y = head + 4 + r * (thumb + 4)
        if label:
            draw.multiline_text((6, y + 4), label, fill=(0, 0, 0), spacing=3, font=font)
        for c, p in enumerate(paths):
            with Image.open(p) as im:
                if im.mode in ("RGBA", "LA", "P"):
                    rgba = im.convert("RGBA")
                    im = Image.new("RGB", rgba.size, "white")
                    im.paste(rgba, mask=rgba.getchannel("A"))
                else:
                    im = im.convert("RGB")
                if scale is not None:
                    im = im.resize(
                        (max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.Resampling.LANCZOS
                    )
                im.thumbnail((thumb, thumb))
                sheet.paste(im, (left + 4 + c * (thumb + 4), y))
    info = PngImagePlugin.PngInfo()
    # named relative to the sheet's folder (`../drawn-pbc/...`): the same bytes wherever the demo is, and no user's
    # home path in a picture the report embeds (the report can be mailed alone)
    here = os.path.abspath(out.parent)
    shown = {
        label or str(i): [Path(os.path.relpath(os.path.abspath(p), here)).as_posix() for p in paths]
        for i, (label, paths) in enumerate(rows)
    }
    info.add_text(KEY, text({"title": title, "rows": shown, "made_by": "naturalize.demo.sheets", "scale": scale}))
    with atomic_open(out, "wb") as f:
        sheet.save(f, format="PNG", pnginfo=info)
    return out


def pair_sheet(top: Sequence[Path], bottom: Sequence[Path], out: Path, title: str, thumb: int = 160) -> Path:
    """Write `out`: thumbnails of `top` (first row) above `bottom` (second row) under a title line."""
    return grid_sheet([("", top), ("", bottom)], out, title, thumb)


def segmentation_sheets(bank_root: Path, fig_dir: Path, n: int = 6) -> dict[str, Path]:
    """PNGs from a sprite bank: 'plates' (source images above their cell-free plates), 'sprites' (usable RBC,
    WBC and PLT sprites, one row per kind) and 'rejected' (images curation dropped, with their flags; absent
    when none was)."""
    from naturalize.bank import Bank

    bank = Bank.open(bank_root)
    data_root = Path(bank.meta["root"])  # sources are relative to the PBC root the bank was cut from
    plates = bank.backgrounds[:n]
    rows: list[tuple[str, Sequence[Path]]] = [
        ("source images", [data_root / b.source for b in plates]),
        ("cell-free plates\n(cells inpainted)", [bank.root / b.relpath for b in plates]),
    ]
    sheets = {
        "plates": grid_sheet(
            rows, fig_dir / SEGMENTATION_SHEETS["plates"], "Training images and the cell-free plates made from them"
        )
    }
    rows = []
    sides = []
    for kind, what in (("RBC", "red cells"), ("WBC", "white cells"), ("PLT", "platelets")):
        sprites = bank.select(kind)
        step = max(1, len(sprites) // (2 * n))
        chosen = sprites[::step][: 2 * n]
        sides += [max(s.x1 - s.x0, s.y1 - s.y0) for s in chosen]
        rows.append((f"{what} ({kind})\n{len(sprites)} usable", [bank.root / s.relpath for s in chosen]))
    # one scale for every sprite (the largest fills a thumbnail): fitted one by one, a platelet was drawn as large
    # as it could be and a white cell shrunk to a red cell's size
    thumb = 110
    sheets["sprites"] = grid_sheet(
        rows,
        fig_dir / SEGMENTATION_SHEETS["sprites"],
        "Usable sprites (shown on white, all at one scale)",
        thumb=thumb,
        scale=min(1.0, thumb / max(sides, default=thumb)),
    )
    removed = [r for r in bank.curation if r.get("keep") == "0"]
    rejected = removed[:n]
    if rejected:
        by_flags: dict[str, list[Path]] = {}  # one row per reason (combination of flags), labelled with it
        for r in rejected:
            by_flags.setdefault("\n".join(f for f in r["flags"].split(";") if f) or "rejected", []).append(
                data_root / r["source"]
            )
        sheets["rejected"] = grid_sheet(
            sorted(by_flags.items()),
            fig_dir / SEGMENTATION_SHEETS["rejected"],
            f"Training images curation removed (kept out of the dataset): {len(rejected)} of {len(removed)} shown",
        )
    return sheets
