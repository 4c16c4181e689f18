"""`naturalize realism --real DIR --synthetic DIR`: the classifier two-sample test, with a real-vs-real
baseline in the same run, per-class table, results JSON, AUC plot and Score-CAM saliency sheet.

Per class the test uses k = min(real, synthetic, --per-class) images of each side: the synthetic ones are
drawn once, the real ones anew per seed. Per seed: real (0) vs synthetic (1), and real vs real (the real
images of each class shuffled and cut in two halves, 0 vs 1; half as many images), each a critic trained
on a stratified part and scored (ROC AUC) on the held-out rest (critic.trial).
In: two folders, seeds, classes, cap, CriticParams. Out: the results dict (also OUT/realism.json), OUT/auc.png,
OUT/saliency.png.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from naturalize.fsio import UserError, write_json
from naturalize.outputs import check_disjoint, claim, write_marker
from naturalize.realism.critic import CriticParams, Trial, keras_or_error, trial
from naturalize.realism.data import Images, apart, balanced, drop_shared, gather, refuse_composites, unmatched
from naturalize.realism.report import draw_auc, draw_saliency, summarise

KIND = "realism"  # the output marker's kind (naturalize.outputs)
OUTPUTS = ("realism.json", "auc.png", "saliency.png")  # what the test writes in --out


def _decode(images: Images, idx: list[int], size: int, progress: bool, desc: str) -> np.ndarray:
    from classify.images import decode_all

    return decode_all([images.paths[i] for i in idx], size, progress=progress, desc=desc)


def _halves(pool: dict[str, list[int]], rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """Real vs real: each class's pool shuffled and cut in two halves."""
    a, b = [], []
    for idx in pool.values():
        perm = rng.permutation(idx).tolist()
        h = len(perm) // 2
        a += perm[:h]
        b += perm[h : 2 * h]
    return a, b


def realism(
    real_dir: str | Path,
    synthetic_dir: str | Path,
    out: str | Path,
    seeds: int = 5,
    classes: tuple[str, ...] = (),
    per_class: int = 0,
    params: CriticParams | None = None,
    saliency: int = 8,
    baseline: bool = True,
    progress: bool = True,
) -> dict:
    """Run the test (see module doc); returns the results and writes OUT/realism.json, auc.png, saliency.png.
    baseline=False skips real vs real (a caller testing several synthetic sets on the same real images)."""
    from tqdm import tqdm

    params = params or CriticParams()
    if seeds < 1:
        raise UserError(f"--seeds {seeds}: need at least 1")
    if per_class < 0 or 0 < per_class < 5:
        raise UserError(f"--per-class {per_class}: give at least 5 images per class and side (0: as many as both have)")
    if params.size < 32:
        raise UserError(f"--size {params.size}: use at least 32 px (128: the benchmark's critic)")
    check_disjoint(out, [("--real", real_dir), ("--synthetic", synthetic_dir)])
    apart(Path(real_dir), Path(synthetic_dir))
    claim(out, KIND)  # a folder of the user's own files is refused before any work
    t0 = time.perf_counter()
    real = gather(Path(real_dir), "--real", classes)
    refuse_composites(real, Path(real_dir))
    syn = drop_shared(gather(Path(synthetic_dir), "--synthetic", classes), real, Path(synthetic_dir))
    keras_or_error()
    # the synthetic side: k per class, drawn once; the real side: every real image of those classes
    _, syn_idx, shared = balanced(real, syn, per_class, np.random.default_rng(0))
    if not shared:
        raise UserError(
            f"--real {real_dir} and --synthetic {synthetic_dir} share no class "
            f"(real: {','.join(sorted(set(real.classes)))}; synthetic: {','.join(sorted(set(syn.classes)))})"
        )
    unmatched(classes, shared, real, syn, Path(real_dir), Path(synthetic_dir))
    k = {c: sum(syn.classes[i] == c for i in syn_idx) for c in shared}
    few = [c for c in shared if k[c] < 5]
    if few:
        counts = "; ".join(
            f"{c}: {len(real.of(c))} in --real {real_dir}, {len(syn.of(c))} in --synthetic {synthetic_dir}" for c in few
        )
        rest = [c for c in shared if c not in few]
        fix = f", or leave {','.join(few)} out with --classes {','.join(rest)}" if rest else ""
        raise UserError(
            f"too few images of {','.join(few)} ({counts}); the test needs at least 5 of a class on each side: "
            f"add images{fix}"
        )
    real_pool = {c: real.of(c) for c in shared}
    real_idx = [i for c in shared for i in real_pool[c]]
    xr = dict(zip(real_idx, _decode(real, real_idx, params.size, progress, "decode real")))
    xs = _decode(syn, syn_idx, params.size, progress, "decode synthetic")
    cs = [syn.classes[i] for i in syn_idx]
    tests: dict[str, list[Trial]] = {"real_vs_synthetic": [], "real_vs_real": []}
    with tqdm(total=(1 + baseline) * seeds, desc="critic", unit="fit", disable=not progress) as bar:
        for seed in range(seeds):
            rng = np.random.default_rng([seed, 0x5EA1])
            ri = [i for c in shared for i in sorted(rng.choice(real_pool[c], k[c], replace=False).tolist())]
            x = np.concatenate([np.stack([xr[i] for i in ri]), xs])
            y = np.r_[np.zeros(len(ri)), np.ones(len(xs))]
            t = trial(x, y, [real.classes[i] for i in ri] + cs, seed, params)
            tests["real_vs_synthetic"].append(t)
            bar.update(1)
            if baseline:
                a, b = _halves(real_pool, rng)
                x = np.stack([xr[i] for i in a + b])
                y = np.r_[np.zeros(len(a)), np.ones(len(b))]
                tests["real_vs_real"].append(trial(x, y, [real.classes[i] for i in a + b], seed, params))
                bar.update(1)
            if seed < seeds - 1:  # the last seed's critic draws the saliency sheet
                keras_or_error().backend.clear_session()
    result = summarise(tests, shared, k)
    result.update(
        real=str(Path(real_dir).resolve()),
        synthetic=str(Path(synthetic_dir).resolve()),
        real_images=len(real.paths),
        real_duplicates_dropped=real.duplicates,
        synthetic_images=len(syn.paths),
        synthetic_duplicates_dropped=syn.duplicates,
        synthetic_same_as_real_dropped=syn.shared,
        synthetic_classes_untested=sorted(set(syn.classes) - set(shared)),
        unclassed_left_out={"real": [str(p) for p in real.unclassed], "synthetic": [str(p) for p in syn.unclassed]},
        per_class_images=k,
        seeds=seeds,
        critic=params.as_dict(),
        backend=keras_or_error().backend.backend(),
        date=time.strftime("%Y-%m-%d %H:%M %Z"),
        wall_s=round(time.perf_counter() - t0, 1),
    )
    out = Path(out)
    last = tests["real_vs_synthetic"][-1]
    x_last = np.concatenate([np.stack([xr[i] for i in ri]), xs])
    provenance = {"real": result["real"], "synthetic": result["synthetic"], "seed": seeds - 1}
    classes_last = [real.classes[i] for i in ri] + cs
    draw_saliency(last, x_last, classes_last, len(ri), saliency, out / "saliency.png", provenance)
    draw_auc(result, out / "auc.png", provenance)
    write_json(out / "realism.json", result)
    write_marker(out, KIND, OUTPUTS)
    return result
