"""Where a matched composite's CPU goes, and the most a better placement sampler could save (issue 10).

    python benchmarks/matched_budget.py --bank BANK [--class PMY] [--n 600] [--reps 4]

One process, one OpenCV thread, the library warmed as a long run warms it (`scene_library(..., warm=True)`),
images 0..n-1 of seed 0 as `naturalize compose --scene matched` makes them; CPU time (`time.process_time`),
the best of --reps passes:

1. Per image, a worker's steps: compose (layout and paint: `render` without its record), the COCO RLE masks
   (`annotate.label_rles`), the rest of the record (`annotate.image_record` less its masks), the journal text
   (`journal_entry` + `journal_line`) and the JPEG (`run.encode`).
2. Placement tries per image: candidates refused at once on their centre pixel (`Occupancy.centre_taken`),
   refused by `Occupancy.fits` (split by reason: too little inside the image, on the white cell, more than the
   allowed overlap with the small cells) and placed.
3. The bound: every image composed twice in turn, normally and replaying its recorded test outcomes, where a
   refused candidate costs a lookup instead of its tests and a placed one is tested as usual. The difference
   is the compose CPU that any sampler placing the same cells could save at most (one that proposed only the
   positions it places; the loop step of each refused candidate is still counted, so the true bound is a
   little larger). Both passes go through the same recording wrappers; each image is checked to come out the
   same and to use up its recorded outcomes.

Prints one JSON object (ms per image).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bank", type=Path, required=True)
    ap.add_argument("--class", dest="cls", default="PMY")
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--reps", type=int, default=4)
    a = ap.parse_args()
    sys.path.insert(0, str(REPO))
    from naturalize.bank import Bank
    from naturalize.classes import CLASSES
    from naturalize.compose import annotate, core
    from naturalize.compose.params import ComposeParams
    from naturalize.compose.run import encode, journal_line
    from naturalize.compose.scenes import compose_scene, scene_library
    from naturalize.testing import machine

    cv2.setNumThreads(1)
    params = ComposeParams(scene="matched")
    lib = scene_library(Bank.open(a.bank), a.cls, 0, params, warm=True)
    seeds = [[0, CLASSES.index(a.cls), i] for i in range(a.n)]
    clock = time.process_time

    def steps() -> list[float]:
        """CPU ms per image of compose, RLE masks, the rest of the record, journal text, JPEG (one pass)."""
        total = np.zeros(5)
        for i, s in enumerate(seeds):
            t0 = clock()
            comp = compose_scene(lib, np.random.default_rng(s), params)
            t1 = clock()
            annotate.label_rles(comp.labels, len(comp.cells))
            t2 = clock()
            record = annotate.image_record(comp, lib, "x.jpg", 0, i)  # RLE masks again: subtracted below
            t3 = clock()
            journal_line(annotate.journal_entry(record))
            t4 = clock()
            encode(comp.image, params)
            t5 = clock()
            total += [t1 - t0, t2 - t1, (t3 - t2) - (t2 - t1), t4 - t3, t5 - t4]
        return (total / a.n * 1e3).tolist()

    parts = np.min([steps() for _ in range(a.reps)], axis=0)

    # placement tries, and the replay that skips the tests of refused candidates
    centre_taken, fits = core.Occupancy.centre_taken, core.Occupancy.fits
    state: dict = {"log": None, "replay": None, "depth": 0, "why": {}}

    def why_refused(occ: core.Occupancy, mask: np.ndarray, x: int, y: int, area: int, min_visible: float) -> str:
        h, w = mask.shape
        H, W = occ.white.shape
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
        m = mask[y0 - y : y1 - y, x0 - x : x1 - x]
        if x1 <= x0 or y1 <= y0 or cv2.countNonZero(m) < min_visible * area:
            return "visible"
        return "white" if cv2.norm(occ.white[y0:y1, x0:x1], cv2.NORM_INF, mask=m) else "overlap"

    def centre_taken_logged(occ: core.Occupancy, cx: int, cy: int) -> bool:
        if state["depth"]:  # inside fits: as it is
            return centre_taken(occ, cx, cy)
        if state["replay"] is not None:
            out = state["replay"].pop()
            return True if out else centre_taken(occ, cx, cy)
        out = centre_taken(occ, cx, cy)
        if state["log"] is not None:
            state["log"].append(out)
            state["why"]["centre"] = state["why"].get("centre", 0) + out
        return out

    def fits_logged(occ: core.Occupancy, mask: np.ndarray, x: int, y: int, area: int, mv: float, ov: float) -> bool:
        if state["replay"] is not None and not state["replay"].pop():
            return False  # refused: its tests are skipped
        state["depth"] += 1
        try:
            out = fits(occ, mask, x, y, area, mv, ov)
        finally:
            state["depth"] -= 1
        if state["log"] is not None and state["replay"] is None:
            state["log"].append(out)
            reason = "placed" if out else why_refused(occ, mask, x, y, area, mv)
            state["why"][reason] = state["why"].get(reason, 0) + 1
        return out

    core.Occupancy.centre_taken, core.Occupancy.fits = centre_taken_logged, fits_logged  # type: ignore[method-assign]
    logs = []
    for s in seeds:
        state["log"] = []
        compose_scene(lib, np.random.default_rng(s), params)
        logs.append(state["log"][::-1])  # popped from the end
    state["log"] = None
    tries = {k: round(v / a.n, 2) for k, v in state["why"].items()}
    normal, replayed = [], []
    for rep in range(a.reps):
        t = [0.0, 0.0]
        for i, s in enumerate(seeds):
            images = []
            for mode in (0, 1) if (i + rep) % 2 == 0 else (1, 0):
                state["replay"] = list(logs[i]) if mode else None
                t0 = clock()
                comp = compose_scene(lib, np.random.default_rng(s), params)
                t[mode] += clock() - t0
                images.append(comp.image)
                assert not state["replay"], f"image {i}: the replay did not follow the recorded tests"
            assert np.array_equal(*images), f"image {i}: the replay composed another image"
        state["replay"] = None
        normal.append(t[0] / a.n * 1e3)
        replayed.append(t[1] / a.n * 1e3)
    core.Occupancy.centre_taken, core.Occupancy.fits = centre_taken, fits  # type: ignore[method-assign]
    saved = [n - r for n, r in zip(normal, replayed)]
    per_image = float(sum(parts))
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": machine(),
        "load_before": round(os.getloadavg()[0], 2),
        "bank": str(a.bank),
        "class": a.cls,
        "images": a.n,
        "ms_per_image": dict(
            zip(("compose", "rle_masks", "record_rest", "journal_text", "jpeg"), np.round(parts, 3).tolist())
        )
        | {"total": round(per_image, 3)},
        "tries_per_image": tries,
        "bound": {
            "compose_normal_ms": [round(x, 3) for x in normal],
            "compose_replayed_ms": [round(x, 3) for x in replayed],
            "saved_ms": [round(x, 3) for x in saved],
            "saved_of_compose": round(float(np.median([s / n for s, n in zip(saved, normal)])), 3),
            "saved_of_per_image_total": round(float(np.median(saved)) / per_image, 3),
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
