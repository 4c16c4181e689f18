"""Compose Naturalize images from a sprite bank in a few lines of the Python API.

    python examples/compose_from_bank.py --bank BANK --class PMY --n 50 --out out/pmy
    python examples/compose_from_bank.py --pbc PBC_ROOT --limit 40 --class PMY --n 8 --out out/pmy

With --pbc (and no bank yet) it first cuts sprites from the first --limit images of the class
(classical backend, no weights needed) into OUT/bank. It writes OUT/images/<CLASS>/*.jpg with the
manifest.jsonl and COCO annotations.json that `naturalize compose` writes, and OUT/sheet.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from naturalize.bank import Bank
from naturalize.compose.preview import contact_sheet
from naturalize.compose.run import compose_class
from naturalize.segment.run import segment


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bank", type=Path, help="a sprite bank made by `naturalize segment`")
    ap.add_argument("--pbc", type=Path, help="a PBC tree to cut a bank from when --bank does not exist yet")
    ap.add_argument("--limit", type=int, default=40, help="images to segment with --pbc")
    ap.add_argument("--class", dest="cls", default="PMY", help="white-cell class to compose")
    ap.add_argument("--n", type=int, default=16, help="images to compose")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("out/compose-example"))
    a = ap.parse_args(argv)

    bank = a.bank or a.out / "bank"
    if not (bank / "bank.json").is_file():
        if a.pbc is None:
            ap.error(f"{bank} is not a sprite bank; pass --pbc PBC_ROOT to make one")
        # classical backend: no checkpoint needed; cut the sprites of one class's images
        segment(a.pbc, bank, backend="classical", classes=(a.cls,), limit=a.limit, workers=1)

    print(f"bank {bank}: {len(Bank.open(bank).select('WBC', a.cls))} whole {a.cls} sprites")
    files = compose_class(bank, a.cls, a.n, a.out / "images", seed=a.seed, workers=1)
    contact_sheet(a.out / "images", a.out / "sheet.png", n=min(len(files), 24))  # look at them
    print(f"composed {len(files)} images into {files[0].parent}; contact sheet {a.out / 'sheet.png'}")


if __name__ == "__main__":
    main()
