"""The realism test's report: summary numbers, the per-class table, results JSON and PNG figures.

In: the trials of each test (critic.Trial per seed), classes and images per class. Out: a JSON-ready dict
(pooled and per-class AUC: every seed's, mean, sd, min, max), a text table, auc.png (AUC per class and
test, every seed a dot) and saliency.png (Score-CAM of the critic on the held-out synthetic images it was
surest of, and the real ones it took most for synthetic).
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np

from naturalize.realism.critic import Trial, critic_features

TESTS = ("real_vs_synthetic", "real_vs_real")
#: Below this held-out AUC the saliency sheet's title says the critic is about at chance (its heat maps, each scaled
#: to 0..1, then show noise, not a tell).
CHANCE = 0.6


def _stats(values: list[float]) -> dict:
    v = [x for x in values if not math.isnan(x)]
    every = [None if math.isnan(x) else round(x, 4) for x in values]
    if not v:
        return {"auc": every, "mean": None, "sd": None, "min": None, "max": None}
    return {
        "auc": every,
        "mean": round(float(np.mean(v)), 4),
        "sd": round(float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, 4),
        "min": round(min(v), 4),
        "max": round(max(v), 4),
    }


def summarise(tests: dict[str, list[Trial]], classes: list[str], per_class: dict[str, int]) -> dict:
    """Pooled and per-class AUC statistics of each test over seeds."""
    return {
        "pooled": {t: _stats([tr.auc for tr in tests[t]]) for t in TESTS},
        "per_class": {
            c: {t: _stats([tr.per_class.get(c, float("nan")) for tr in tests[t]]) for t in TESTS}
            | {"images": per_class[c]}
            for c in classes
        },
    }


#: Below this many images per class and side, one class's held-out AUC is mostly chance (the critic is scored on
#: the held-out 40 %: at 50 a side, 20 each, AUC's sd under "no difference" is already ~0.09).
FEW_IMAGES = 50


def table(result: dict) -> str:
    """The per-class table as text (AUC mean +- sd over seeds)."""

    def cell(s: dict) -> str:
        return "   n/a     " if s["mean"] is None else f"{s['mean']:.3f}±{s['sd']:.3f}"

    lines = [f"{'class':<6}{'images':>7}  {'real vs synthetic':>17}  {'real vs real':>12}"]
    rows = list(result["per_class"].items()) + [
        ("all", result["pooled"] | {"images": sum(v["images"] for v in result["per_class"].values())})
    ]
    for c, r in rows:
        lines.append(f"{c:<6}{r['images']:>7}  {cell(r['real_vs_synthetic']):>17}  {cell(r['real_vs_real']):>12}")
    few = [c for c, r in result["per_class"].items() if r["images"] < FEW_IMAGES]
    if few:
        lines.append(
            f"note: {', '.join(few)} {'has' if len(few) == 1 else 'have'} fewer than {FEW_IMAGES} images per side: "
            f"at that size even real vs real swings far from 0.5 (its column shows by how much); read the pooled "
            f"row, or give more images"
        )
    return "\n".join(lines)


def left_out(result: dict) -> list[str]:
    """One 'warning:' line per kind of image the test left out (realism.json names the key), none when it used all."""
    lines = []
    for side in ("real", "synthetic"):
        if n := result[f"{side}_duplicates_dropped"]:
            lines.append(
                f"warning: left out {n} --{side} image(s) byte-identical to another --{side} image (counted once; "
                f"realism.json: {side}_duplicates_dropped)"
            )
    if n := result["synthetic_same_as_real_dropped"]:
        lines.append(
            f"warning: left out {n} --synthetic image(s) byte-identical to --real ones (a copy of a real image is no "
            f"synthetic image; realism.json: synthetic_same_as_real_dropped)"
        )
    near = (
        ("real_near_copies_dropped", "--real image(s) the same picture as another --real image"),
        ("synthetic_near_copies_dropped", "--synthetic image(s) the same picture as another --synthetic image"),
        ("synthetic_near_copies_of_real_dropped", "--synthetic image(s) the same picture as a --real image"),
    )
    for key, what in near:
        if n := result.get(key, 0):
            lines.append(
                f"warning: left out {n} {what} (a re-save, re-encoding or flip: the same 16x16 thumbnail within 2 grey "
                f"levels; on both sides of a split it would be scored from memory; realism.json: {key})"
            )
    if differ := unlike(result.get("real_formats", {}), result.get("synthetic_formats", {})):
        lines.append(
            f"warning: the sides differ in {differ}: a critic may tell them apart by that alone, not by "
            f"realism; save the synthetic images as the real ones are (realism.json: real_formats, synthetic_formats)"
        )
    if untested := result["synthetic_classes_untested"]:
        lines.append(
            f"warning: --synthetic images of {','.join(untested)} are not tested: --real {result['real']} has none "
            f"of that class; add real images of it to test them (realism.json: synthetic_classes_untested)"
        )
    for side, paths in result["unclassed_left_out"].items():
        if paths:
            lines.append(
                f"warning: left out {len(paths)} --{side} image(s) with no class (the release's unlabeled IG_ and "
                f"NEUTROPHIL_ files have none), e.g. {Path(result[side]) / paths[0]}: to test them, name them by "
                f"class (PMY_1.png) or put them in class folders (PMY/; realism.json: unclassed_left_out, relative to "
                f"--{side})"
            )
    return lines


def unlike(real: dict[str, int], synthetic: dict[str, int]) -> str:
    """'' when both sides' most common file format and pixel size agree (counts of 'FORMAT WxH'), else what
    differs, e.g. "image format (--real mostly JPEG, --synthetic mostly PNG)"."""

    def mostly(kinds: dict[str, int], part: int) -> str:
        tally: Counter[str] = Counter()
        for kind, n in kinds.items():
            tally[kind.split(" ")[part]] += n
        return tally.most_common(1)[0][0] if tally else ""

    differ = []
    for part, what in ((0, "image format"), (1, "pixel size")):
        r, s = mostly(real, part), mostly(synthetic, part)
        if r and s and r != s:
            differ.append(f"{what} (--real mostly {r}, --synthetic mostly {s})")
    return " and ".join(differ)


def auc_figure(result: dict):
    """The AUC figure (matplotlib Figure): mean AUC per class (and pooled) for each test as bars, every seed a dot,
    0.5 dotted; the legend outside the axes (inside it hid the first bars) and the y axis down to the lowest dot.
    Bars rise (or fall) from 0.5, chance: drawn from 0 on an axis cut at 0.3, their lengths were not their values,
    and 0.58 against 0.48 looked half as large again."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(result["per_class"]) + ["all"]
    stats = [result["per_class"][c] for c in result["per_class"]] + [result["pooled"]]
    fig, ax = plt.subplots(figsize=(1.3 * len(groups) + 2, 3.6))
    lowest = 0.3
    for j, (t, colour) in enumerate(zip(TESTS, ("#cc6677", "#88aacc"))):
        for g, s in enumerate(stats):
            x = g + (j - 0.5) * 0.38
            v = [a for a in s[t]["auc"] if a is not None]
            if v:
                label = t.replace("_", " ") if g == 0 else None
                ax.bar(x, np.mean(v) - 0.5, 0.36, bottom=0.5, color=colour, label=label)
                ax.scatter([x] * len(v), v, c="k", s=8, zorder=3)
                lowest = min(lowest, np.floor(min(v) * 10) / 10)
    ax.axhline(0.5, ls=":", c="k", lw=0.8)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylim(max(0.0, lowest), 1.02)
    ax.set_ylabel("held-out AUC (bars from 0.5, chance)")
    ax.set_title("can a critic tell them apart? (0.5: no)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def draw_auc(result: dict, path: Path, provenance: dict) -> None:
    """auc_figure as a PNG at `path` with the provenance."""
    from classify.plots import save_figure

    save_figure(auc_figure(result), path, provenance)


def saliency_figure(tr: Trial, x: np.ndarray, classes: list[str], n_real: int, n: int):
    """Score-CAM of the critic (target: 'synthetic') on the n held-out synthetic images it scored highest
    and the n // 2 held-out real images it scored highest: image above (titled with its side, class and score),
    heat map below, with a colour bar of its 0..1 scale. x: the trial's images (real first, n_real of them),
    classes: the class of each. A Figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from classify.scorecam import score_cam

    test, scores = np.asarray(tr.test), np.asarray(tr.scores)
    order = np.argsort(-scores, kind="stable")
    syn = [int(i) for i in order if test[i] >= n_real][:n]
    real = [int(i) for i in order if test[i] < n_real][: max(1, n // 2)]
    picks = [(i, "synthetic") for i in syn] + [(i, "real") for i in real]
    features = critic_features(tr.model)
    fig, axes = plt.subplots(2, len(picks), figsize=(1.6 * len(picks), 3.6), squeeze=False)
    for col, (i, kind) in enumerate(picks):
        image = x[test[i]]
        cam, _, _ = score_cam(tr.model, features, image, target=0)
        axes[0, col].imshow(image)
        axes[0, col].set_title(f"{kind} {classes[test[i]]}\nP(syn)={scores[i]:.3f}", fontsize=7)
        axes[1, col].imshow(image)
        axes[1, col].imshow(cam, cmap="jet", alpha=0.45, vmin=0, vmax=1)
        for ax in axes[:, col]:
            ax.axis("off")
    fig.suptitle(
        f"where the critic sees 'synthetic' (Score-CAM, held-out images it was surest of); this critic's held-out "
        f"AUC {tr.auc:.2f}{' (near or below chance: the maps show no tell)' if tr.auc < CHANCE else ''}",
        fontsize=9,
    )
    # the heat maps' scale, on an axis of its own beside the lower row (taken from the panels it would shrink them
    # out of line with the images above)
    fig.subplots_adjust(right=0.9)
    low = axes[1, -1].get_position()
    cax = fig.add_axes((0.92, low.y0, 0.012, low.height))
    bar = fig.colorbar(plt.cm.ScalarMappable(cmap="jet", norm=plt.Normalize(0, 1)), cax=cax)
    bar.set_label("'synthetic' evidence\n(0..1, normalised)", fontsize=7)
    bar.ax.tick_params(labelsize=7)
    return fig


def draw_saliency(
    tr: Trial, x: np.ndarray, classes: list[str], n_real: int, n: int, path: Path, provenance: dict
) -> None:
    """saliency_figure as a PNG at `path` with the provenance."""
    from classify.plots import save_figure

    save_figure(saliency_figure(tr, x, classes, n_real, n), path, provenance)
