"""Compose CPU of two versions of the compose core, interleaved in one process (robust to a busy machine).

    python benchmarks/compose_ab.py --old /tmp/oldtree [--bank bench-out/compose-speed/bank] [--scene matched]
        [--n 300] [--reps 5]

--old is a checkout of another commit (e.g. `git archive REV | tar -x -C /tmp/oldtree`). Both versions of
naturalize/compose/core.py and annotate.py are loaded side by side and compose the same images from one
library (this tree's): each image by both in turn, the order alternating, the images and their records' text
(manifest line and COCO annotations) asserted equal. Prints, per version, the median over --reps of the CPU
ms per image of compose (layout + paint) and of its record (COCO RLE masks + manifest text), and the new / old
ratio of every repeat: on a loaded 2-core machine absolute times swing by 2x, the ratios of interleaved runs
much less.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def load_module(name: str, path: Path) -> ModuleType:
    """The module at `path` under another name (its own imports resolve to this tree's package)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", type=Path, required=True, help="root of the other version's tree")
    ap.add_argument("--bank", type=Path, default=REPO / "bench-out" / "compose-speed" / "bank")
    ap.add_argument("--scene", default="matched", choices=["matched", "paper"])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    sys.path.insert(0, str(REPO))
    from naturalize.bank import Bank
    from naturalize.compose import annotate, core
    from naturalize.compose.params import ComposeParams
    from naturalize.compose.scenes import scene_library

    versions = {
        "old": (
            load_module("old_core", a.old / "naturalize/compose/core.py"),
            load_module("old_annotate", a.old / "naturalize/compose/annotate.py"),
        ),
        "new": (core, annotate),
    }
    cv2.setNumThreads(1)
    params = ComposeParams(scene=a.scene)
    lib = scene_library(Bank.open(a.bank), "PMY", 0, params, warm=True)

    def one(version: str, i: int) -> tuple[float, float, np.ndarray, str]:
        vcore, vann = versions[version]
        rng = np.random.default_rng([0, 1, i])
        t0 = time.process_time()
        p = lib.scene.layouts[int(rng.integers(len(lib.scene.layouts)))] if a.scene == "matched" else params
        comp = vcore.compose_image(lib, rng, p)
        t1 = time.process_time()
        entry = vann.journal_entry(vann.image_record(comp, lib, "x.jpg", 0, i))
        return t1 - t0, time.process_time() - t1, comp.image, entry["manifest"] + entry["coco"]

    per_rep: dict[str, list[tuple[float, float]]] = {"old": [], "new": []}
    for rep in range(a.reps):
        total = {"old": [0.0, 0.0], "new": [0.0, 0.0]}
        for i in range(a.n):
            images, texts = [], []
            for version in ("old", "new") if (i + rep) % 2 == 0 else ("new", "old"):
                c, r, image, text = one(version, i)
                total[version][0] += c
                total[version][1] += r
                images.append(image)
                texts.append(text)
            assert np.array_equal(images[0], images[1]), f"image {i} differs between the versions"
            assert texts[0] == texts[1], f"the record of image {i} differs between the versions"
        for version, (c, r) in total.items():
            per_rep[version].append((c / a.n * 1e3, r / a.n * 1e3))
    for version, reps in per_rep.items():
        c, r = statistics.median(x[0] for x in reps), statistics.median(x[1] for x in reps)
        print(f"{a.scene} {version}: compose {c:.3f} ms, record {r:.3f} ms per image (median of {a.reps})")
    ratios = [(n[0] / o[0], n[1] / o[1]) for n, o in zip(per_rep["new"], per_rep["old"])]
    print("new / old per repeat: compose", [round(x[0], 3) for x in ratios], "record", [round(x[1], 3) for x in ratios])


if __name__ == "__main__":
    main()
