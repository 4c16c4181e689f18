"""How closely a scene's composites follow the real images of their class (the matched scene's check).

    python benchmarks/scene_match.py --bank BANK [--class PMY] [--scene matched] [--n 300] [--seed 0]
        [--out bench-out/scene-match]

Per image, on a label map (which cell each pixel shows): red cells (count), the fraction of them cut by the
image border, red-cell coverage (fraction of the image's pixels), the fraction of red cells touching another
red cell (their pixels 8-adjacent), whether a red cell touches the white cell (within 2 px), platelets
(count) and the white cell's offset from the image centre (|dx|, |dy| px). Real: the bank's kept source
images of the class with one white cell (scene_stats.measure), their label maps drawn from the bank's
sprites (alpha >= 128) at their places, red cells counted as the curation does (clumps and cut cells
included: what matched draws from). Composites: `--n` images of `--scene` (seed `--seed`, indices 0..n-1:
what `naturalize compose` writes), in this process. Prints one JSON object: per statistic the mean, its
standard error and the real mean; writes OUT/scene_match-<scene>-<seed>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
_RING = np.ones((3, 3), np.uint8)
_NEAR = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
STATS = ("n_rbc", "border_cut", "coverage", "rbc_touching", "rbc_wbc_contact", "n_plt", "wbc_dx", "wbc_dy")


def image_stats(labels: np.ndarray, kinds: list[str], n_rbc: int | None = None) -> dict[str, float]:
    """The statistics of one label map (0 = plate, j + 1 = cell j of `kinds`: RBC, PLT, WBC) (pure)."""
    H, W = labels.shape
    lab = labels.astype(np.int32)
    rbc = [j + 1 for j, k in enumerate(kinds) if k == "RBC"]
    wbc = np.isin(lab, [j + 1 for j, k in enumerate(kinds) if k in ("WBC", "centre")])
    is_rbc = np.zeros(len(kinds) + 1, bool)
    is_rbc[rbc] = True
    red = is_rbc[lab]
    seen = [j for j in rbc if (lab == j).any()]
    edge = set(np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])).tolist())
    touching = 0
    for j in seen:
        own = (lab == j).view(np.uint8)
        ring = cv2.dilate(own, _RING).astype(bool) & ~own.astype(bool)
        touching += bool((red & ring).any())
    ys, xs = np.nonzero(wbc)
    near_white = cv2.dilate(wbc.view(np.uint8), _NEAR).astype(bool)
    return {
        "n_rbc": float(len(seen) if n_rbc is None else n_rbc),
        "border_cut": sum(j in edge for j in seen) / max(1, len(seen)),
        "coverage": float(red.mean()),
        "rbc_touching": touching / max(1, len(seen)),
        "rbc_wbc_contact": float((near_white & red).any()),
        "n_plt": float(sum(k == "PLT" and (lab == j + 1).any() for j, k in enumerate(kinds))),
        "wbc_dx": abs(xs.mean() - (W - 1) / 2) if len(xs) else 0.0,
        "wbc_dy": abs(ys.mean() - (H - 1) / 2) if len(ys) else 0.0,
    }


def real_stats(bank, cls: str) -> list[dict[str, float]]:
    """image_stats of every real image the class's scene statistics are measured on."""
    from naturalize.compose.scene_stats import measure

    st = measure(bank, cls)
    n_rbc = dict(zip(st.sources, st.n_rbc.tolist()))
    size = {b.source: (b.width, b.height) for b in bank.backgrounds}
    by_source: dict[str, list] = {}
    for s in sorted(bank.sprites, key=lambda s: s.sprite_id):
        by_source.setdefault(s.source, []).append(s)
    out = []
    for source in st.sources:
        w, h = size[source]
        labels = np.zeros((h, w), np.uint16)
        kinds = []
        for s in by_source[source]:
            m = bank.load_mask(s)  # a mask-only (rejected) sprite needs no file
            kinds.append(s.kind)
            hh, ww = min(m.shape[0], h - s.y0), min(m.shape[1], w - s.x0)
            region = labels[s.y0 : s.y0 + hh, s.x0 : s.x0 + ww]
            region[m[:hh, :ww]] = len(kinds)
        out.append(image_stats(labels, kinds, n_rbc[source]))
    return out


def composite_stats(bank, cls: str, scene: str, n: int, seed: int) -> list[dict[str, float]]:
    """image_stats of composites 0..n-1 of (scene, seed), composed as `naturalize compose` does."""
    from naturalize.classes import CLASSES
    from naturalize.compose.params import ComposeParams
    from naturalize.compose.scenes import compose_scene, scene_library

    p = ComposeParams(scene=scene)
    lib = scene_library(bank, cls, seed, p, threads=2, warm=n >= 1000)
    out = []
    for i in range(n):
        comp = compose_scene(lib, np.random.default_rng([seed, CLASSES.index(cls), i]), p)
        kinds = [{"centre": "WBC", "kept": "RBC"}.get(c.role, c.role) for c in comp.cells]
        out.append(image_stats(comp.labels, kinds))
    return out


def summary(rows: list[dict[str, float]]) -> dict[str, list[float]]:
    """Per statistic [mean, standard error of the mean]."""
    return {
        k: [round(float(np.mean(v)), 4), round(float(np.std(v, ddof=1) / np.sqrt(len(v))), 4)]
        for k in STATS
        for v in [[r[k] for r in rows]]
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bank", type=Path, required=True)
    ap.add_argument("--class", dest="cls", default="PMY")
    ap.add_argument("--scene", default="matched")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "bench-out" / "scene-match")
    a = ap.parse_args()
    from naturalize.bank import Bank

    cv2.setNumThreads(1)
    bank = Bank.open(a.bank)
    t0, c0 = time.perf_counter(), time.process_time()
    real = real_stats(bank, a.cls)
    ours = composite_stats(bank, a.cls, a.scene, a.n, a.seed)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "load_before": round(os.getloadavg()[0], 2),
        "bank": str(a.bank),
        "class": a.cls,
        "scene": a.scene,
        "seed": a.seed,
        "real_images": len(real),
        "composites": len(ours),
        "real": summary(real),
        "composite": summary(ours),
        "wall_s": round(time.perf_counter() - t0, 1),
        "cpu_s": round(time.process_time() - c0, 1),
    }
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / f"scene_match-{a.scene}-{a.seed}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
