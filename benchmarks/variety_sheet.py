"""Contact sheet of white-cell variety at its strongest (all four `compose --wbc-*` switches) beside plain
composites of the same cells and real crops, for checking by eye that nothing a hematologist reads changed.

    python benchmarks/variety_sheet.py --bank BANK --real REAL_TREE [--classes BNE,MMY,MY,PMY,SNE] [--n 4]
        [--seed 3] [--crop 220] [--out bench-out/variety-sheet]

Per class one row: --n real crops of the class from REAL_TREE (sorted by name), then --n plain transplant
composites, then the same --n composites (same seed: same white cells, same donor images) with --wbc-scale
--wbc-stain --wbc-warp --wbc-focus; each tile the centre --crop px of its image at full resolution.
Writes OUT/sheet.png (and the composites under OUT/plain, OUT/all).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from naturalize.compose.params import ComposeParams
from naturalize.compose.run import compose_class
from naturalize.fsio import write_bytes

SETTINGS = {
    "plain": ComposeParams(),
    "all": ComposeParams(wbc_scale=True, wbc_stain=True, wbc_warp=True, wbc_focus=True),
}


def centre_crop(path: Path, side: int) -> np.ndarray:
    """The centre side x side px of an image (BGR)."""
    im = cv2.imread(str(path), cv2.IMREAD_COLOR)
    h, w = im.shape[:2]
    return im[(h - side) // 2 : (h + side) // 2, (w - side) // 2 : (w + side) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bank", type=Path, required=True)
    ap.add_argument("--real", type=Path, required=True)
    ap.add_argument("--classes", default="BNE,MMY,MY,PMY,SNE")
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--crop", type=int, default=220)
    ap.add_argument("--out", type=Path, default=Path("bench-out/variety-sheet"))
    a = ap.parse_args()
    gap = np.full((a.crop, 8, 3), 255, np.uint8)
    rows = []
    for c in a.classes.split(","):
        made = {
            k: compose_class(a.bank, c, a.n, a.out / k, seed=a.seed, params=p, workers=1, progress=False)
            for k, p in SETTINGS.items()
        }
        groups = [sorted(a.real.rglob(f"{c}_*.jpg"))[: a.n], made["plain"], made["all"]]
        row = np.hstack([t for g in groups for t in [gap] + [centre_crop(p, a.crop) for p in g]][1:])
        cv2.putText(row, c, (4, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 2)
        rows.append(row)
    ok, buf = cv2.imencode(".png", np.vstack(rows))
    write_bytes(a.out / "sheet.png", buf.tobytes())
    print(a.out / "sheet.png")


if __name__ == "__main__":
    main()
