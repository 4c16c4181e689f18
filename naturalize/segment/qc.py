"""The QC page `naturalize segment` writes into BANK/qc/: what went into the bank, in one minute.

In: a sprite bank (and the PBC root its sources are relative to). Out, all seeded and atomic:
    qc/sprites.png   per source class: the lowest-quality kept white cells and a sample of the rejected
                     sprites, white cells first (each labelled with its reason); then the lowest-quality kept
                     RBC and PLT
    qc/sources.png   source images of every class (8, or 12 for PBC's 11) with every sprite outlined: green
                     kept, red rejected, grey cut by the border (white cells in blue when kept), a legend on top
    qc/index.html    the two sheets, the gate's counts (kind x reason) and, for SAM, the masks its filters dropped
                     before the gate (per reason)
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from naturalize.bank import PASS, Bank, SpriteRow
from naturalize.decode import load_image
from naturalize.fsio import UserError, write_bytes, write_text
from naturalize.pngmeta import png_bytes

TILE = 72
LABEL_H = 14
LABEL_SCALE = 0.33  # font scale of a tile's label; a longer label is drawn smaller to fit its cell, never cut
LABEL_MIN_SCALE = 0.25
OUTLINE = {"ok": (40, 170, 40), "WBC": (40, 80, 230), "rejected": (220, 30, 30), "border": (150, 150, 150)}
LEGEND = {"ok": "kept RBC / PLT", "WBC": "kept white cell", "rejected": "rejected", "border": "cut by the border"}
LEGEND_H = 20


def on_checkerboard(rgba: np.ndarray) -> np.ndarray:
    """RGB view of an RGBA sprite over a grey checkerboard, so its alpha (mask) shows."""
    yy, xx = np.mgrid[: rgba.shape[0], : rgba.shape[1]]
    chk = np.where(((yy // 6 + xx // 6) % 2)[..., None] == 0, 235, 190).astype(np.float32)
    a = rgba[:, :, 3:4] / 255.0
    return (rgba[:, :, :3] * a + chk * (1 - a)).astype(np.uint8)


def grid(
    tiles: Sequence[np.ndarray],
    cols: int,
    width: int,
    height: int | None = None,
    bg: int = 255,
    labels: Sequence[str] = (),
    upscale: bool = True,
) -> np.ndarray:
    """RGB tiles (RGBA ones shown over a checkerboard) scaled into width x height cells, `cols` per row,
    each with an optional label under it; upscale=False keeps small tiles at their own size (true scale)."""
    height = height or width
    cell_h = height + (LABEL_H if labels else 0)
    rows = (len(tiles) + cols - 1) // cols
    out = np.full((max(1, rows) * cell_h, cols * width, 3), bg, np.uint8)
    for k, t in enumerate(tiles):
        if t.shape[2] == 4:
            t = on_checkerboard(t)
        sc = min(width / t.shape[1], height / t.shape[0], np.inf if upscale else 1.0)
        t = cv2.resize(t, (max(1, int(t.shape[1] * sc)), max(1, int(t.shape[0] * sc))), interpolation=cv2.INTER_AREA)
        r, c = divmod(k, cols)
        out[r * cell_h : r * cell_h + t.shape[0], c * width : c * width + t.shape[1]] = t
        if k < len(labels):
            cv2.putText(
                out,
                labels[k],
                (c * width + 2, r * cell_h + height + LABEL_H - 3),
                cv2.FONT_HERSHEY_SIMPLEX,
                label_scale(labels[k], width - 4),
                (0, 0, 0),
                1,
                cv2.LINE_AA,
            )
    return out


def label_scale(text: str, width: int) -> float:
    """Font scale at which `text` (OpenCV's simplex font) fits in `width` pixels: LABEL_SCALE, or smaller for a
    long label (down to LABEL_MIN_SCALE), so a reason such as "PLT wbc_contact" is shown whole."""
    scale = LABEL_SCALE  # the font's width is not linear in its scale at these sizes: step down until it fits
    while scale > LABEL_MIN_SCALE and cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > width:
        scale = round(scale - 0.01, 2)
    return scale


def titled(title: str, body: np.ndarray, width: int) -> np.ndarray:
    """`body` under a one-line title, padded to `width`."""
    head = np.full((18, width, 3), 255, np.uint8)
    cv2.putText(head, title, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    body = np.pad(body, ((0, 4), (0, max(0, width - body.shape[1])), (0, 0)), constant_values=255)[:, :width]
    return np.vstack([head, body])


def _sample(rows: list[SpriteRow], k: int, rng: np.random.Generator) -> list[SpriteRow]:
    if len(rows) <= k:
        return rows
    return [rows[i] for i in np.sort(rng.choice(len(rows), size=k, replace=False))]


def _lowest(rows: list[SpriteRow], k: int) -> list[SpriteRow]:
    return sorted(rows, key=lambda r: (r.quality, r.sprite_id))[:k]


def sprite_sheet(bank: Bank, per_row: int = 12, seed: int = 0) -> tuple[np.ndarray, dict[str, list[str]]]:
    """The sprites.png sheet (see the module doc) and what it shows: per row title, the sprite ids in order."""
    rng = np.random.default_rng(seed)
    width = per_row * TILE
    by_class: dict[str, str] = {r["source"]: r["label"] for r in bank.curation}
    parts = []
    shown: dict[str, list[str]] = {}

    def row(title: str, rows: list[SpriteRow], label_of) -> None:
        tiles = [bank.load_sprite(r) for r in rows]
        body = (
            grid(tiles, per_row, TILE, labels=[label_of(r) for r in rows])
            if tiles
            else np.full((TILE // 3, width, 3), 255, np.uint8)
        )
        parts.append(titled(f"{title} ({len(rows)})" if tiles else f"{title}: none", body, width))
        shown[title] = [r.sprite_id for r in rows]

    kept = [s for s in bank.sprites if s.reason == PASS and not s.touches_border]
    rejected = [s for s in bank.sprites if s.reason not in (PASS, "border")]
    for cls in sorted(set(by_class.values())):
        row(
            f"{cls}: lowest-quality kept white cells",
            _lowest([s for s in kept if s.kind == "WBC" and s.label == cls], per_row),
            lambda r: f"q {r.quality:.2f}",
        )
        mine = [s for s in rejected if by_class.get(s.source) == cls]
        wbc = _sample([s for s in mine if s.kind == "WBC"], per_row, rng)  # the class's own cells first
        row(
            f"{cls}: rejected sprites (sample, white cells first)",
            wbc + _sample([s for s in mine if s.kind != "WBC"], per_row - len(wbc), rng),
            lambda r: f"{r.kind} {r.reason}",
        )
    for kind in ("RBC", "PLT"):
        row(
            f"{kind}: lowest-quality kept",
            _lowest([s for s in kept if s.kind == kind], 2 * per_row),
            lambda r: f"q {r.quality:.2f}",
        )
        row(
            f"{kind}: rejected (sample)",
            _sample([s for s in rejected if s.kind == kind], 2 * per_row, rng),
            lambda r: r.reason,
        )
    return np.vstack(parts), shown


def legend(width: int) -> np.ndarray:
    """A LEGEND_H x width strip naming each outline colour of sources.png (a swatch, then its meaning)."""
    strip = np.full((LEGEND_H, width, 3), 255, np.uint8)
    x = 4
    for key, text in LEGEND.items():
        cv2.rectangle(strip, (x, 5), (x + 18, LEGEND_H - 6), OUTLINE[key], -1)
        cv2.putText(strip, text, (x + 24, LEGEND_H - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        x += 24 + cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)[0][0] + 18
    return strip


def outlined_source(bank: Bank, source_root: Path, source: str) -> np.ndarray | None:
    """The source image with the outline of every sprite it gave (colours: OUTLINE); None when unreadable."""
    try:  # the pixels as stored, the ones segment read (cv2.imread would turn the image by its EXIF tag)
        rgb = load_image(source_root / source, None)
    except UserError:
        return None
    for s in (r for r in bank.sprites if r.source == source):
        cnts, _ = cv2.findContours(
            bank.load_mask(s).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE, offset=(s.x0, s.y0)
        )
        colour = (
            (OUTLINE["WBC"] if s.kind == "WBC" else OUTLINE["ok"])
            if s.reason == PASS
            else OUTLINE["border"]
            if s.reason == "border"
            else OUTLINE["rejected"]
        )
        cv2.drawContours(rgb, cnts, -1, colour, 2 if s.reason == PASS else 1)
    return rgb


def source_sheet(bank: Bank, source_root: Path, n: int | None = None, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """The sources.png sheet: a colour legend over n source images, spread over classes (seeded), with their sprites
    outlined; and the sources shown (paths relative to the PBC root), in order. n defaults to at least one image of
    every class (8, or the class count rounded up to a full row of 4: 12 for PBC's 11 classes)."""
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[str]] = {}
    for r in bank.curation:
        by_class.setdefault(r["label"], []).append(r["source"])
    if n is None:
        n = max(8, -(-len(by_class) // 4) * 4)
    pools = {c: [v[i] for i in rng.permutation(len(v))] for c, v in sorted(by_class.items())}
    chosen: list[str] = []
    while len(chosen) < n and any(pools.values()):
        for c in pools:
            if pools[c] and len(chosen) < n:
                chosen.append(pools[c].pop())
    tiles, labels, shown = [], [], []
    for src in chosen:
        img = outlined_source(bank, source_root, src)
        if img is not None:
            tiles.append(img)
            labels.append(Path(src).stem)
            shown.append(src)
    return np.vstack([legend(4 * 300), grid(tiles, 4, 300, 300, labels=labels)]), shown


def masks_table(masks: dict | None) -> str:
    """HTML of bank.json's counts.masks (what SAM's filters dropped before the gate: per reason, for the grid prompts'
    masks and the centre prompt's); "" when the bank has none (the classical backend)."""
    if not isinstance(masks, dict):
        return ""
    grid, centre = masks.get("grid_dropped", {}), masks.get("centre_dropped", {})
    reasons = list(dict.fromkeys([*grid, *centre]))
    head = "".join(f"<th>{html.escape(r)}</th>" for r in reasons)

    def row(name: str, kept: int, total: int, dropped: dict) -> str:
        cells = "".join(f"<td>{dropped[r]}</td>" if r in dropped else "<td>-</td>" for r in reasons)
        return f"<tr><th>{name}</th><td>{total}</td><td>{kept}</td>{cells}</tr>"

    return (
        f"<p>Masks SAM dropped before the gate ({masks.get('images', 0)} images; grid: "
        f"{masks.get('grid_prompts', 0)} point prompts, three candidate masks each; centre: one white-cell prompt "
        f"per image, kept whatever its predicted IoU and stability). Passed on = given kinds, then to the gate:</p>"
        f"<table border=1 cellpadding=3><tr><th></th><th>masks</th><th>passed on</th>{head}</tr>"
        f"{row('grid', masks.get('grid_kept', 0), masks.get('grid_masks', 0), grid)}"
        f"{row('centre', masks.get('centre_kept', 0), masks.get('images', 0), centre)}</table>{assigned(masks)}"
    )


def assigned(masks: dict) -> str:
    """HTML: of the masks passed on, how many became cells and why the rest were dropped (assign_masks); "" for a
    bank cut before those were counted."""
    if "assign_kept" not in masks:
        return ""
    passed = masks.get("grid_kept", 0) + masks.get("centre_kept", 0)
    dropped = ", ".join(f"{html.escape(k)} {n}" for k, n in masks.get("assign_dropped", {}).items())
    return f"<p>Of the {passed} masks passed on, {masks['assign_kept']} became cells (dropped: {dropped}).</p>"


def write_qc(bank_root: str | Path, source_root: str | Path, seed: int = 0) -> Path:
    """Write BANK/qc/{sprites.png, sources.png, index.html}; returns the index.html path."""
    root = Path(bank_root)
    bank = Bank.open(root)
    qc = root / "qc"
    made = {"made_by": "naturalize segment (QC page)", "seed": seed}  # ids and PBC-relative paths: no folder named
    sheet, rows = sprite_sheet(bank, seed=seed)
    write_bytes(qc / "sprites.png", png_bytes(sheet, {**made, "sprite_ids": rows}))
    sheet, sources = source_sheet(bank, Path(source_root), seed=seed)
    write_bytes(qc / "sources.png", png_bytes(sheet, {**made, "sources": sources}))
    gate = bank.meta.get("counts", {}).get("gate", {})
    reasons = sorted({r for per in gate.values() for r in per}, key=lambda r: (r != PASS, r))
    head = "".join(f"<th>{html.escape(r)}</th>" for r in reasons)
    body = "".join(
        f"<tr><th>{k}</th>" + "".join(f"<td>{per.get(r, 0)}</td>" for r in reasons) + "</tr>" for k, per in gate.items()
    )
    # no path in the page: a bank moved or resumed elsewhere gives the same bytes
    page = (
        f"<!doctype html><meta charset='utf-8'><title>Sprite bank QC</title>"
        f"<h1>Sprite bank QC ({html.escape(str(bank.meta.get('backend', '')))})</h1>"
        f"<p>{len(bank.curation)} source images. "
        f"Sprites per kind and quality-gate reason (<b>ok</b> = composited):</p>"
        f"<table border=1 cellpadding=3><tr><th></th>{head}</tr>{body}</table>"
        f"{masks_table(bank.meta.get('counts', {}).get('masks'))}"
        f"<h2>Sprites: lowest-quality kept and rejected, per class</h2>"
        f"<p>Kept sprites are labelled <b>q</b>, the quality gate's score (0..1, higher is better: "
        f"shape, size and contact, times colour and outline terms); rejected ones with their kind and reason "
        f"(table above).</p><img src='sprites.png'>"
        f"<h2>Source images: green kept, blue kept white cell, red rejected, grey cut by the border</h2>"
        f"<img src='sources.png'>\n"
    )
    write_text(qc / "index.html", page)
    return qc / "index.html"
