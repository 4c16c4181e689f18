"""How many red cells `naturalize compose` places when asked for k, around the `--rbc` bound (issue 11).

compose refuses `--rbc` above MAX_RBC_FILL x image area / the bank's median red-cell area, because above it red
cells no longer fit and would be dropped without a word. This draws a small PBC-like set (naturalize.drawn, or
uses --bank), composes --n images in memory for each k in --ks (default: the bound, bound - 1, 8; larger k are
composed without
the check) and prints the red cells placed per image (min / median / max) and how many images fell short of k.

    python benchmarks/rbc_capacity.py [--bank BANK] [--out bench-out/rbc-capacity] [--n 60]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from naturalize.bank import Bank
from naturalize.compose.core import compose_image
from naturalize.compose.library import load_library
from naturalize.compose.params import ComposeParams
from naturalize.compose.run import MAX_RBC_FILL


def drawn_bank(work: Path) -> Path:
    """A classical bank of a drawn 4-per-class set's training split (made once under `work`)."""
    from naturalize.drawn import write_drawn_release
    from naturalize.prepare import prepare
    from naturalize.segment.run import segment

    if not (work / "bank" / "bank.json").is_file():
        write_drawn_release(work / "pbc", 4, seed=0, progress=False)
        prepare(work / "pbc", work / "prep", progress=False, workers=1)
        segment(
            work / "prep",
            work / "bank",
            backend="classical",
            split="train",
            workers=1,
            progress=False,
            echo=lambda m: None,
        )
    return work / "bank"


def placed_rbc(bank: Bank, k: int, n: int, seed: int = 0) -> list[int]:
    """Red cells compose_image places in each of n PMY images asked for k (in memory, no --rbc check)."""
    params = ComposeParams(rbc=k)
    lib = load_library(bank, "PMY", seed, params)
    return sorted(
        sum(1 for c in compose_image(lib, np.random.default_rng([seed, 9, i]), params).cells if c.role == "RBC")
        for i in range(n)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bank", type=Path, help="a sprite bank (default: a drawn one made under --out)")
    ap.add_argument("--out", type=Path, default=Path("bench-out/rbc-capacity"))
    ap.add_argument("--n", type=int, default=60, help="images per k")
    ap.add_argument("--ks", default="", help="red-cell counts to try, e.g. 8,12,16 (default: 8, bound - 1, bound)")
    a = ap.parse_args()
    bank = Bank.open(a.bank or drawn_bank(a.out / "drawn"))
    areas = sorted(r.area for r in bank.select("RBC"))
    median = areas[len(areas) // 2]
    w, h = ComposeParams().size  # the PBC size the compose defaults use
    bound = int(MAX_RBC_FILL * w * h / median)
    print(f"median red-cell area {median} px, fill {MAX_RBC_FILL}: --rbc bound {bound} at {w}x{h}")
    for k in sorted({int(k) for k in a.ks.split(",") if k} or {8, bound - 1, bound}):
        got = placed_rbc(bank, k, a.n)
        short = sum(1 for g in got if g < k)
        print(
            f"--rbc {k}{' (refused)' if k > bound else ''}: placed min {got[0]} median {got[len(got) // 2]} "
            f"max {got[-1]}; {short} of {len(got)} images short"
        )


if __name__ == "__main__":
    main()
