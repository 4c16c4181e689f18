"""`naturalize realism --real DIR --synthetic DIR`: the classifier two-sample test, with a real-vs-real
baseline in the same run, per-class table, results JSON, AUC plot and Score-CAM saliency sheet.

Every image of the classes both sides hold is decoded (pixels.decode) and near-copies left out (within a side,
and synthetic ones of a real image). Per class the test uses k = min(real, synthetic, --per-class) images of each
side: the synthetic ones are drawn once, the real ones anew per seed. Per seed: real (0) vs synthetic (1), and
real vs real (the real images of each class shuffled, min(k, half of them) against as many others, 0 vs 1), each
a critic trained on a stratified part and scored (ROC AUC) on the held-out rest (critic.trial).
In: two folders, seeds, classes, cap, CriticParams. Out: the results dict (also OUT/realism.json), OUT/auc.png,
OUT/saliency.png.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from naturalize.classes import CLASSES
from naturalize.fsio import UserError, write_json
from naturalize.outputs import check_disjoint, claim, dropped_if_unused, write_marker
from naturalize.realism.critic import CriticParams, Trial, keras_or_error, trial
from naturalize.realism.data import Images, apart, balanced, drop_shared, gather, refuse_composites, subset, unmatched
from naturalize.realism.pixels import decode, formats, near_copies, thumbnails
from naturalize.realism.report import draw_auc, draw_saliency, summarise

KIND = "realism"  # the output marker's kind (naturalize.outputs)
OUTPUTS = ("realism.json", "auc.png", "saliency.png")  # what the test writes in --out


def _halves(pool: dict[str, list[int]], half: dict[str, int], rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """Real vs real: each class's pool shuffled, its first half[c] images against the next half[c]."""
    a, b = [], []
    for c, idx in pool.items():
        perm = rng.permutation(idx).tolist()
        a += perm[: half[c]]
        b += perm[half[c] : 2 * half[c]]
    return a, b


def _draw(
    real: Images, syn: Images, shared: list[str], per_class: int, real_dir: Path, syn_dir: Path
) -> tuple[list[int], dict[str, int]]:
    """The synthetic side: k = min(real, synthetic, per_class) images per class, drawn once (indices into syn), and
    k per class; UserError when a class has under 5 a side."""
    _, syn_idx, _ = balanced(real, syn, per_class, np.random.default_rng(0))
    k = {c: sum(syn.classes[i] == c for i in syn_idx) for c in shared}
    few = [c for c in shared if k[c] < 5]
    if few:
        counts = "; ".join(
            f"{c}: {len(real.of(c))} in --real {real_dir}, {len(syn.of(c))} in --synthetic {syn_dir}" for c in few
        )
        rest = [c for c in shared if c not in few]
        fix = f", or leave {','.join(few)} out with --classes {','.join(rest)}" if rest else ""
        raise UserError(
            f"too few images of {','.join(few)} ({counts}, near-copies counted once); the test needs at least 5 of "
            f"a class on each side: add images{fix}"
        )
    return syn_idx, k


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
    shared = [c for c in CLASSES if real.of(c) and syn.of(c)]
    if not shared:
        raise UserError(
            f"--real {real_dir} and --synthetic {synthetic_dir} share no class "
            f"(real: {','.join(sorted(set(real.classes)))}; synthetic: {','.join(sorted(set(syn.classes)))})"
        )
    unmatched(classes, shared, real, syn, Path(real_dir), Path(synthetic_dir))
    _draw(real, syn, shared, per_class, Path(real_dir), Path(synthetic_dir))  # too few images: refused before decoding
    # every image of the shared classes decoded (one way for every format), near-copies left out: within a side
    # (the first kept) and synthetic ones of a real image
    n_real, n_syn = len(real.paths), len(syn.paths)  # before the classes not tested and near-copies leave
    untested = sorted(set(syn.classes) - set(shared))
    real = subset(real, [i for c in shared for i in real.of(c)])
    syn = subset(syn, [i for c in shared for i in syn.of(c)])
    pr = decode(real.paths, params.size, progress, "decode real")
    ps = decode(syn.paths, params.size, progress, "decode synthetic")
    tr, ts = thumbnails(pr.x), thumbnails(ps.x)
    real_near, syn_near = near_copies(tr), near_copies(ts)
    syn_of_real = near_copies(tr[~real_near], ts) & ~syn_near
    keep_r, keep_s = np.flatnonzero(~real_near), np.flatnonzero(~syn_near & ~syn_of_real)
    if not len(keep_s):
        raise UserError(
            f"--synthetic {synthetic_dir}: every image is the same picture as one in --real (a re-saved, re-encoded or "
            f"flipped copy); point --synthetic at synthetic images (e.g. a compose --out)"
        )
    real, syn = subset(real, keep_r.tolist()), subset(syn, keep_s.tolist())
    xr_all, xs_all = pr.x[keep_r], ps.x[keep_s]
    real_kinds, syn_kinds = [pr.kinds[i] for i in keep_r], [ps.kinds[i] for i in keep_s]
    syn_idx, k = _draw(real, syn, shared, per_class, Path(real_dir), Path(synthetic_dir))
    real_pool = {c: real.of(c) for c in shared}
    xs = xs_all[syn_idx]
    cs = [syn.classes[i] for i in syn_idx]
    half = {c: min(k[c], len(real_pool[c]) // 2) for c in shared}  # real vs real: as many a side as the test has
    tests: dict[str, list[Trial]] = {"real_vs_synthetic": [], "real_vs_real": []}
    with tqdm(total=(1 + baseline) * seeds, desc="critic", unit="fit", disable=not progress) as bar:
        for seed in range(seeds):
            rng = np.random.default_rng([seed, 0x5EA1])
            ri = [i for c in shared for i in sorted(rng.choice(real_pool[c], k[c], replace=False).tolist())]
            x = np.concatenate([xr_all[ri], xs])
            y = np.r_[np.zeros(len(ri)), np.ones(len(xs))]
            t = trial(x, y, [real.classes[i] for i in ri] + cs, seed, params)
            tests["real_vs_synthetic"].append(t)
            bar.update(1)
            if baseline:
                a, b = _halves(real_pool, half, rng)
                x = xr_all[a + b]
                y = np.r_[np.zeros(len(a)), np.ones(len(b))]
                tests["real_vs_real"].append(trial(x, y, [real.classes[i] for i in a + b], seed, params))
                bar.update(1)
            if seed < seeds - 1:  # the last seed's critic draws the saliency sheet
                keras_or_error().backend.clear_session()
    result = summarise(tests, shared, k)
    result.update(
        real=str(Path(real_dir).resolve()),
        synthetic=str(Path(synthetic_dir).resolve()),
        real_images=n_real,
        real_duplicates_dropped=real.duplicates,
        synthetic_images=n_syn,
        synthetic_duplicates_dropped=syn.duplicates,
        synthetic_same_as_real_dropped=syn.shared,
        real_near_copies_dropped=int(real_near.sum()),
        synthetic_near_copies_dropped=int(syn_near.sum()),
        synthetic_near_copies_of_real_dropped=int(syn_of_real.sum()),
        real_formats=formats(real_kinds),
        synthetic_formats=formats(syn_kinds[i] for i in syn_idx),
        synthetic_classes_untested=untested,
        unclassed_left_out={  # relative to their side's folder: the same from any current directory
            side: [p.relative_to(folder).as_posix() for p in im.unclassed]
            for side, folder, im in (("real", Path(real_dir), real), ("synthetic", Path(synthetic_dir), syn))
        },
        per_class_images=k,
        real_vs_real_per_class_images=half if baseline else {},
        seeds=seeds,
        critic=params.as_dict(),
        backend=keras_or_error().backend.backend(),
        date=time.strftime("%Y-%m-%d %H:%M %Z"),
        wall_s=round(time.perf_counter() - t0, 1),
    )
    out = Path(out)
    last = tests["real_vs_synthetic"][-1]
    x_last = np.concatenate([xr_all[ri], xs])
    provenance = {"real": result["real"], "synthetic": result["synthetic"], "seed": seeds - 1}
    classes_last = [real.classes[i] for i in ri] + cs
    # the marker first: a run stopped between its files (out of room, Ctrl-C) leaves a folder the rerun may write
    with dropped_if_unused(out):
        write_marker(out, KIND, OUTPUTS)
        write_json(out / "realism.json", result)
        draw_auc(result, out / "auc.png", provenance)
        draw_saliency(last, x_last, classes_last, len(ri), saliency, out / "saliency.png", provenance)
    return result
