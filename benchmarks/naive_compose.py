"""The paper's Algorithm 1 as a plain single-process PIL program: the baseline of the compose benchmarks.

Per image: open a random background, paste one WBC sprite of the class at the centre and `rbc` red-cell
sprites at random positions whose boxes overlap no box placed before (rejection sampling, boxes only),
save as JPEG (quality 75, 4:4:4, as the PBC files and Naturalize). Sprites are opened from the bank folder when
used, as Algorithm 1 reads them. No
transforms, no feathering, no stain matching: what Naturalize improves on.
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image

from naturalize.bank import Bank
from naturalize.compose.params import ComposeParams


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def naive_compose(
    bank: Bank,
    cls: str,
    n: int,
    out: Path,
    seed: int = 0,
    rbc: int = 8,
    tries: int = 100,
    size: tuple[int, int] = ComposeParams().size,
) -> list[Path]:
    """Write n Algorithm-1 composites of class `cls` into out/<cls>_naive_<i>.jpg; returns their paths."""
    rnd = random.Random(seed)
    wbcs = [bank.root / r.relpath for r in bank.select("WBC", cls)]
    rbcs = [bank.root / r.relpath for r in bank.select("RBC")]
    backs = [bank.root / r.relpath for r in bank.backgrounds]
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        with Image.open(rnd.choice(backs)) as im:
            canvas = im.convert("RGB").resize(size)
        W, H = size
        boxes = []
        with Image.open(rnd.choice(wbcs)) as sp:
            wbc = sp.convert("RGBA")
        x, y = (W - wbc.width) // 2, (H - wbc.height) // 2
        canvas.paste(wbc, (x, y), wbc)
        boxes.append((x, y, x + wbc.width, y + wbc.height))
        for _ in range(rbc):
            with Image.open(rnd.choice(rbcs)) as sp:
                cell = sp.convert("RGBA")
            for _t in range(tries):
                x, y = rnd.randint(0, max(0, W - cell.width)), rnd.randint(0, max(0, H - cell.height))
                box = (x, y, x + cell.width, y + cell.height)
                if not any(_overlaps(box, b) for b in boxes):
                    canvas.paste(cell, (x, y), cell)
                    boxes.append(box)
                    break
        path = out / f"{cls}_naive_{i}.jpg"
        canvas.save(path, quality=75, subsampling=0)  # the PBC files' format, as Naturalize writes
        paths.append(path)
    return paths
