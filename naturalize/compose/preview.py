"""Contact sheets: people judge realism by eye, so show real and synthetic images side by side.

In: a folder (a compose output, a dataset tree, any tree of images) and optionally a folder of real
images. An image is synthetic when its name has `_syn_` in it (every Naturalize composite does), real
otherwise; with a real folder, the real tiles come from it alone, and a folder without composites (another
tool's synthetic images) is synthetic throughout. Out: a PNG grid, real tiles on the left half and synthetic
on the right (or one kind only), each tile labelled with its class and origin (a bank's sprites: 'sprite', all at
one scale, so sizes compare); images chosen by seed, spread
over classes; the files shown and the seed in the PNG's text chunk 'provenance'.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from naturalize.classes import class_of_prefix
from naturalize.fsio import UserError, write_bytes
from naturalize.outputs import check_file_output
from naturalize.paths import is_composite_name, is_image_name, visible_files
from naturalize.pngmeta import png_bytes

TILE = 128


def find_images(root: Path) -> tuple[list[Path], list[Path]]:
    """(real, synthetic) image paths under root, sorted; synthetic = '_syn_' in the file name."""
    files = [p for p in visible_files(root) if is_image_name(p) and p.is_file()]
    return [p for p in files if not is_composite_name(p)], [p for p in files if is_composite_name(p)]


def _label(path: Path) -> str:
    """The class a tile shows: the file-name prefix's, else the folder's; a bank's sprite by its kind (a red cell
    cut from a PMY image, sprites/RBC/PMY_1_RBC_0.png, is RBC; sprites/WBC/PMY/... is PMY)."""
    kind = path.parent.name
    if path.parent.parent.name == "sprites" and kind in ("RBC", "PLT"):
        return kind
    return class_of_prefix(path.name) or kind


def _pick(paths: list[Path], k: int, rng: np.random.Generator) -> list[Path]:
    """k paths spread over classes (round-robin over the classes in the file names), drawn by rng."""
    by_class: dict[str, list[Path]] = {}
    for p in paths:
        by_class.setdefault(_label(p), []).append(p)
    pools = {c: [v[i] for i in rng.permutation(len(v))] for c, v in sorted(by_class.items())}
    out: list[Path] = []
    while len(out) < k and any(pools.values()):
        for c in list(pools):
            if pools[c] and len(out) < k:
                out.append(pools[c].pop())
    return out


def _tile(path: Path, origin: str, scale: float | None = None) -> np.ndarray | None:
    """A labelled tile of the image, or None when the file cannot be decoded in full (corrupt, or a truncated
    JPEG, which OpenCV would fill with grey: read by the reader `classify` and `realism` use, which refuses it).
    The image is fitted to the tile, or, with `scale`, resized by that factor (sprites of one sheet at one scale)."""
    from naturalize.decode import load_image

    try:
        rgb = load_image(path, None)
    except UserError:
        return None
    h, w = rgb.shape[:2]  # fitted whole, its shape kept (a squashed cell would be judged for the wrong reason)
    fit = TILE / max(h, w) if scale is None else min(scale, TILE / max(h, w))
    th, tw = max(1, round(h * fit)), max(1, round(w * fit))
    t = np.full((TILE, TILE, 3), 255, np.uint8)
    y, x = (TILE - th) // 2, (TILE - tw) // 2
    t[y : y + th, x : x + tw] = cv2.resize(
        np.ascontiguousarray(rgb[:, :, ::-1]), (tw, th), interpolation=cv2.INTER_AREA
    )
    label = f"{_label(path)} {origin}"
    cv2.rectangle(t, (0, TILE - 16), (TILE, TILE), (255, 255, 255), -1)
    cv2.putText(t, label, (3, TILE - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return t


def _longer_side(path: Path) -> int:
    """The longer side of an image file in pixels (its header only; 1 when unreadable)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return max(im.size)
    except (OSError, ValueError, Image.DecompressionBombError):  # an unreadable file: _tile reports it
        return 1


def _tiles(paths: list[Path], origin: str, bad: list[Path], scale: float | None = None) -> list[np.ndarray]:
    """Tiles of the readable paths; unreadable ones are appended to `bad` (all reported together)."""
    out = []
    for p in paths:
        t = _tile(p, origin, scale)
        if t is None:
            bad.append(p)
        else:
            out.append(t)
    return out


def _grid(tiles: list[np.ndarray], cols: int) -> np.ndarray:
    rows = max(1, -(-len(tiles) // cols))
    sheet = np.full((rows * (TILE + 2), cols * (TILE + 2), 3), 255, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        sheet[r * (TILE + 2) : r * (TILE + 2) + TILE, c * (TILE + 2) : c * (TILE + 2) + TILE] = t
    return sheet


def contact_sheet(
    root: str | Path, out: str | Path, n: int = 48, real: str | Path | None = None, seed: int = 0
) -> dict:
    """Write the contact sheet PNG of `root` (and `real`) to `out`; returns tile counts per origin ('real',
    'synthetic') and the chosen files that could not be read ('unreadable'; left out of the sheet)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} is not a folder; give a compose output or a dataset folder")
    if n <= 0:
        raise UserError(f"--n {n}: the number of tiles must be at least 1")
    check_file_output(out, (".png",), inputs=[("the image folder", root), ("the --real folder", real)])
    # a sprite bank: its sprites (not the QC pages or the backgrounds)
    is_bank = (root / "bank.json").is_file()
    reals, syns = find_images(root / "sprites" if is_bank else root)
    if real is not None:
        if not Path(real).is_dir():
            raise UserError(f"--real {real} is not a folder of images")
        # DIR is the synthetic side: its composites, or every image of another tool's output (no *_syn_* names)
        syns = syns or reals
        reals = find_images(Path(real))[0]
    if not reals and not syns:
        raise UserError(f"no images under {root}; run `naturalize compose` or `naturalize build` first")
    rng = np.random.default_rng(seed)
    bad: list[Path] = []
    chosen: dict[str, list[Path]] = {"real": [], "synthetic": []}
    if reals and syns:
        half = max(1, n // 2)
        cols = max(1, int(np.ceil(np.sqrt(half))))
        chosen = {"real": _pick(reals, half, rng), "synthetic": _pick(syns, half, rng)}
        left_tiles = _tiles(chosen["real"], "real", bad)
        right_tiles = _tiles(chosen["synthetic"], "syn", bad)
        left, right = _grid(left_tiles, cols), _grid(right_tiles, cols)
        h = max(left.shape[0], right.shape[0])
        pad = lambda a: np.vstack([a, np.full((h - a.shape[0], a.shape[1], 3), 255, np.uint8)])  # noqa: E731
        sheet = np.hstack([pad(left), np.full((h, 12, 3), 0, np.uint8), pad(right)])
        counts = {"real": len(left_tiles), "synthetic": len(right_tiles)}
    else:
        pool, origin = (syns, "syn") if syns else (reals, "real")
        chosen["synthetic" if syns else "real"] = _pick(pool, n, rng)
        picked = chosen["synthetic" if syns else "real"]
        scale = None
        if is_bank:  # sprites at one scale, the largest filling a tile: fitted one by one, a platelet was drawn
            origin = "sprite"  # as large as a white cell
            scale = TILE / max((_longer_side(p) for p in picked), default=TILE)
        tiles = _tiles(picked, origin, bad, scale)
        sheet = _grid(tiles, max(1, int(np.ceil(np.sqrt(len(tiles) * 1.5)))))
        counts = {"real": 0 if syns else len(tiles), "synthetic": len(tiles) if syns else 0}
    if bad and not sum(counts.values()):
        raise UserError(f"none of the {len(bad)} images chosen could be read (first: {bad[0]}); check the folder")
    # relative to the folder they were found in: the same sheet, byte for byte, from any current directory and
    # for a relative or an absolute DIR (and no user's home path in a picture that may be mailed)
    base = {"real": Path(real) if real is not None else root, "synthetic": root}
    shown = {o: [p.relative_to(base[o]).as_posix() for p in paths if p not in bad] for o, paths in chosen.items()}
    write_bytes(out, png_bytes(sheet[:, :, ::-1], {"made_by": "naturalize preview", "seed": seed, **shown}))
    return {**counts, "unreadable": [str(p) for p in bad]}
