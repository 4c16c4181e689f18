"""Does Naturalize help a classifier where real images are scarce, more than flip copies? (issue 10, item 5)

    python benchmarks/naturalize_gain.py [--sample DIR] [--out bench-out/naturalize-gain] [--eval test|dev]
        [--seeds 5] [--repeats 3] [--main-level 50] [--levels 25,50,100] [--extra 400] [--epochs 15] [--size 96]
        [--arms real,flip,transplant,matched,paper,transplant+flip,transplant+variety,transplant+variety16,
               transplant+donors]
        [--curve-arms real,flip,transplant] [--curve-seeds 0]

The five augmented classes (BNE, MMY, MY, PMY, SNE) of the shared sample, each de-duplicated and cut by seed 0 as
benchmarks/realism.py cuts them (bank part 150, dev 40, test 40 per class). Per seed s and level n:
1. split: --eval test: the bank and test parts (190 per class) are shuffled by seed s: the first 100 are the
   training pool, the other 90 are tested (the dev part is never read); --eval dev: the bank part (150) shuffled
   by seed s: 100 pool, the dev part (40) and the other 50 tested (for tuning: every setting of the final run is
   decided here, never on the test part);
2. subsample: the first n images of the seed's shuffle of the pool (nested: 25 in 50 in 100), segmented into a
   bank of their own (classical backend), so composites hold only those images' cells;
3. extra images, --extra per class, seed s: `flip` (flip/90-degree-turn copies of the n images) or `compose` with a
   scene (transplant, matched, paper) or transplant with the white-cell variety switches (--wbc-scale --wbc-stain;
   transplant+variety16: all four switches and 16 variants per cell; transplant+donors: the bank also holds 100
   images of each other white-cell class, BA EO ERB LY MO, as scene donors);
   arm `transplant+flip` takes the first half of the transplant images and the first half of the flips;
4. the paper's custom CNN (from scratch, random flips each epoch, Adam with a cosine learning rate) trained
   --repeats times (training seeds 1000 s + r) on the n real + extra images, scored on the seed's test crops:
   accuracy and F1 per class (scikit-learn), averaged over the repeats (one training per arm and seed swings the
   mean F1 by 0.03-0.05, as much as the effect measured: protocol 2, BENCHMARKS.md).
Every arm runs at --main-level; --curve-arms also at every --levels (on the first --curve-seeds seeds).
Paired differences (arm - flip, per seed) of the mean F1 of the five classes with 95 % t-intervals.

Everything reused is version-stamped: trees, banks, extra images and runs live under OUT/<kind>/<key>, key = hash
of a stamp (this protocol's version, a hash of the naturalize/classify sources, the parameters, the input
images; the git commit is reported, not stamped); a stamp that differs builds a new folder (in a temporary
one, renamed when complete) and never deletes the old one.
Outputs (rewritten after every run, so a stopped run leaves its figures):
OUT/gain-<eval>.json, OUT/gain-<eval>.md (tables) and OUT/gain-<eval>.png (the curve and the paired differences).
Target (issue 10): at <= 50 real images per class, Naturalize beats flip copies on the mean F1 by >= 0.03,
paired over 5 seeds, with the 95 % interval above 0.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from naturalize.classes import AUGMENTED_CLASSES  # noqa: E402
from naturalize.fsio import UserError, atomic_open, write_json, write_text  # noqa: E402
from naturalize.testing import machine, sample_home  # noqa: E402

#: Bump when this script's protocol (split, subsample, training loop) changes: every stamp changes with it.
#: 3: test crops + the pool's images past POOL, cosine learning rate, --repeats trainings per seed.
PROTOCOL = 3
#: Parts of the realism protocol, per class (benchmarks/realism.py, seed 0).
PARTS = (150, 40, 40)
#: Training pool per class (the most real images a level may take); the seed's other pool images are tested too.
POOL = 100
#: Extra-image sources: name -> compose settings (None: flip copies of the real images).
EXTRAS: dict[str, dict | None] = {
    "flip": None,
    "transplant": {"scene": "transplant"},
    "matched": {"scene": "matched"},
    "paper": {"scene": "paper"},
    "transplant-variety": {"scene": "transplant", "wbc_scale": True, "wbc_stain": True},
    # every white-cell variety switch, and 16 variants of each cell instead of 4 (each its own turn, size, stain,
    # warp): with 25 cells per class, +400 composites then show ~400 different looks of the cells, not ~100
    "transplant-variety16": {
        "scene": "transplant",
        "wbc_scale": True,
        "wbc_stain": True,
        "wbc_warp": True,
        "wbc_focus": True,
        "centre_variants": 16,
    },
    # transplant with scene donors from other classes too, as in a user's bank (every training image of every class):
    # "donors" = images of each DONOR_CLASSES class added to the bank (scenes only: only the wanted class's cells
    # are pasted); the other keys are ComposeParams
    "transplant-donors": {"scene": "transplant", "donors": 100},
}
#: The sample's other white-cell classes: scene donors for "donors" extras (never tested).
DONOR_CLASSES = ("BA", "EO", "ERB", "LY", "MO")
#: Arms: name -> ((extra source, share of --extra), ...).
ARMS: dict[str, tuple[tuple[str, float], ...]] = {
    "real": (),
    "flip": (("flip", 1.0),),
    "transplant": (("transplant", 1.0),),
    "matched": (("matched", 1.0),),
    "paper": (("paper", 1.0),),
    "transplant+flip": (("transplant", 0.5), ("flip", 0.5)),
    "transplant+variety": (("transplant-variety", 1.0),),
    "transplant+variety16": (("transplant-variety16", 1.0),),
    "transplant+donors": (("transplant-donors", 1.0),),
}


# ---------------------------------------------------------------- version stamps


def code_version() -> dict:
    """sha256 of the naturalize and classify sources (what makes the data and trains), and the git commit."""
    h = hashlib.sha256()
    for pkg in ("naturalize", "classify"):
        for p in sorted((ROOT / pkg).rglob("*.py")):
            h.update(str(p.relative_to(ROOT)).encode() + b"\0" + p.read_bytes())
    git = lambda *args: subprocess.run(  # noqa: E731
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "protocol": PROTOCOL,
        "sources_sha256": h.hexdigest(),
        "git_commit": git("rev-parse", "HEAD") or None,
        "git_clean": git("status", "--porcelain", "--", "naturalize", "classify") == "",
    }


def stamp_key(stamp: dict) -> str:
    """16 hex digits naming a stamp (sha256 of its canonical JSON)."""
    return hashlib.sha256(json.dumps(stamp, sort_keys=True).encode()).hexdigest()[:16]


def stamped_dir(parent: Path, stamp: dict, build: Callable[[Path], None]) -> Path:
    """parent/<key>: reused when its stamp.json equals `stamp`, else `build(tmp)` fills a new temporary folder
    that is renamed into place once complete (with its stamp). Nothing is ever deleted."""
    final = parent / stamp_key(stamp)
    if final.is_dir():
        found = json.loads((final / "stamp.json").read_text()) if (final / "stamp.json").is_file() else None
        if found != json.loads(json.dumps(stamp)):
            raise UserError(f"{final}: exists without this run's stamp; move it away or pick another --out")
        return final
    tmp = parent / f".{final.name}.part-{os.getpid()}-{time.time_ns()}"
    tmp.mkdir(parents=True)
    build(tmp)
    write_json(tmp / "stamp.json", stamp)
    tmp.rename(final)
    return final


def stamped_json(parent: Path, stamp: dict, compute: Callable[[], dict]) -> dict:
    """The result stored under parent/<key>.json for `stamp`, else `compute()` stored there atomically."""
    path = parent / f"{stamp_key(stamp)}.json"
    if path.is_file():
        found = json.loads(path.read_text())
        if found.get("stamp") == json.loads(json.dumps(stamp)):
            return found["result"]
        raise UserError(f"{path}: holds another stamp; move it away or pick another --out")
    result = compute()
    write_json(path, {"stamp": stamp, "result": result})
    return result


# ---------------------------------------------------------------- protocol (pure)


def seed_split(
    parts: dict[str, dict[str, list[Path]]], classes: list[str], seed: int, mode: str, pool_size: int = POOL
) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    """(training pool of `pool_size` in the seed's order, test crops) per class. test: bank + test parts shuffled by
    the seed, the first `pool_size` are the pool, the rest tested; dev: the bank part shuffled by the seed, the first
    `pool_size` are the pool, the dev part and the bank part's rest tested (the test part is never read)."""
    pool: dict[str, list[Path]] = {}
    test: dict[str, list[Path]] = {}
    for k, c in enumerate(classes):
        rng = np.random.default_rng([seed, k, 0x6A1])
        both = parts["bank"][c] + ([] if mode == "dev" else parts["test"][c])
        order = [both[i] for i in rng.permutation(len(both))]
        pool[c] = order[:pool_size]
        test[c] = (list(parts["dev"][c]) if mode == "dev" else []) + order[pool_size:]
    return pool, test


def donors_of(source: str) -> int:
    """How many images of each DONOR_CLASSES class an extra source's bank adds as scene donors (0: none)."""
    return int((EXTRAS[source] or {}).get("donors", 0))


def pick_donors(by_class: dict[str, list[Path]], n: int, seed: int) -> list[Path]:
    """The first n of each class's images in the seed's order (scene donors of other classes)."""
    out: list[Path] = []
    for k, c in enumerate(sorted(by_class)):
        paths = by_class[c]
        order = np.random.default_rng([seed, k, 0xD0]).permutation(len(paths))
        out += [paths[i] for i in order[:n]]
    return out


def arm_counts(arm: str, extra: int) -> list[tuple[str, int]]:
    """(extra source, images per class) of an arm: shares of `extra`, the last one takes the rounding."""
    spec = ARMS[arm]
    counts, left = [], extra
    for i, (source, share) in enumerate(spec):
        n = left if i == len(spec) - 1 else int(round(extra * share))
        counts.append((source, n))
        left -= n
    return counts


def t_interval(d: list[float]) -> list[float]:
    """95 % t-interval of the mean of paired differences (scipy); NaNs below two pairs."""
    from scipy import stats

    if len(d) < 2:
        return [float("nan"), float("nan")]
    m, se = float(np.mean(d)), float(np.std(d, ddof=1) / np.sqrt(len(d)))
    h = float(stats.t.ppf(0.975, len(d) - 1)) * se
    return [round(m - h, 4), round(m + h, 4)]


def paired(arm: list[dict], base: list[dict]) -> dict:
    """arm - base of the mean F1, paired by seed (rows carry 'seed' and 'macro_f1'): per seed, mean, 95 % t-interval."""
    b = {r["seed"]: r["macro_f1"] for r in base}
    d = [round(r["macro_f1"] - b[r["seed"]], 4) for r in arm if r["seed"] in b]
    return {"per_seed": d, "mean": round(float(np.mean(d)), 4) if d else None, "ci95": t_interval(d)}


def summary(runs: dict[str, dict[str, list[dict]]], classes: list[str], main_level: int) -> dict:
    """Per level and arm: seeds, mean F1 (mean, sd), per-class F1 (mean); paired differences against flip."""
    out: dict = {"levels": {}, "vs_flip": {}}
    for level, arms in runs.items():
        out["levels"][level] = {
            arm: {
                "seeds": [r["seed"] for r in rows],
                "macro_f1": [r["macro_f1"] for r in rows],
                "mean": round(float(np.mean([r["macro_f1"] for r in rows])), 4),
                "sd": round(float(np.std([r["macro_f1"] for r in rows], ddof=1)), 4) if len(rows) > 1 else 0.0,
                "f1": {c: round(float(np.mean([r["f1"][c] for r in rows])), 3) for c in classes},
            }
            for arm, rows in arms.items()
            if rows
        }
        out["vs_flip"][level] = {
            arm: d
            for arm, rows in arms.items()
            if arm != "flip" and (d := paired(rows, arms.get("flip", [])))["per_seed"]
        }
    main = out["vs_flip"].get(str(main_level), {}).get("transplant")
    out["target_met"] = bool(main and main["mean"] is not None and main["mean"] >= 0.03 and main["ci95"][0] > 0)
    return out


# ---------------------------------------------------------------- I/O: data, banks, extra images, training


def link_images(paths: list[Path], release: Path, out: Path) -> None:
    """A release-layout tree of symlinks to `paths` under out/PBC_dataset_normal_DIB (read in place)."""
    for p in paths:
        d = out / "PBC_dataset_normal_DIB" / p.relative_to(release).parent
        d.mkdir(parents=True, exist_ok=True)
        (d / p.name).symlink_to(p.resolve())


def segment_into(tree: Path, out: Path, workers: int) -> None:
    """`naturalize segment --backend classical` of a tree into `out`."""
    cmd = [sys.executable, "-m", "naturalize.cli", "segment", str(tree), "--out", str(out)]
    subprocess.run([*cmd, "--backend", "classical", "--workers", str(workers), "--no-progress"], check=True)


def flip_copies(sources: list[Path], n: int, out_dir: Path, seed: int) -> list[Path]:
    """`n` copies of real images (cycled) each under one of the 7 non-identity flips/90-degree turns (JPEG q75
    4:4:4, as the PBC files), written atomically into out_dir."""
    from PIL import Image

    out_dir.mkdir(parents=True, exist_ok=True)
    ops = np.random.default_rng(seed).integers(1, 8, n)
    written = []
    for i in range(n):
        src = sources[i % len(sources)]
        dst = out_dir / f"{src.stem}_flip_{i}.jpg"
        a = np.asarray(Image.open(src).convert("RGB"))
        k, flip = int(ops[i]) % 4, int(ops[i]) >= 4
        a = np.rot90(a[:, ::-1] if flip else a, k)
        with atomic_open(dst, "wb") as f:
            Image.fromarray(np.ascontiguousarray(a)).save(f, format="JPEG", quality=75, subsampling=0)
        written.append(dst)
    return written


def extra_images(
    source: str, real: dict[str, list[Path]], bank: Path, n: int, seed: int, parent: Path, stamp: dict, workers: int
) -> dict[str, list[Path]]:
    """class -> n extra images of one source (EXTRAS), built once per stamp under parent/<key>."""
    from naturalize.compose.params import ComposeParams
    from naturalize.compose.run import compose_class

    def build(tmp: Path) -> None:
        for c, paths in real.items():
            if EXTRAS[source] is None:
                flip_copies(paths, n, tmp / c, seed)
            else:
                params = ComposeParams(**{k: v for k, v in EXTRAS[source].items() if k != "donors"})  # bank only
                compose_class(bank, c, n, tmp, seed=seed, params=params, workers=workers, progress=False)

    folder = stamped_dir(parent, stamp, build)
    pattern = "*_flip_*.jpg" if EXTRAS[source] is None else "*_syn_*.jpg"
    index = lambda p: int(p.stem.rsplit("_", 1)[1])  # noqa: E731
    return {c: sorted((folder / c).glob(pattern), key=index) for c in real}


def train_score(
    train: list[Path],
    classes: list[str],
    test_x: np.ndarray,
    test_y: np.ndarray,
    seed: int,
    epochs: int,
    size: int,
    repeats: int,
) -> dict:
    """Accuracy, mean F1 of the classes and per-class F1 of the custom CNN (from scratch, random flips each epoch,
    cosine learning rate) trained on `train` (class = file-name prefix) and scored on the test crops, averaged over
    `repeats` trainings (training seeds 1000 * seed + r: initialisation, flips, batches); each one kept in 'repeats'."""
    from realism import train_predict
    from sklearn.metrics import accuracy_score, f1_score

    from classify.images import decode_all

    t0 = time.perf_counter()
    x = decode_all(train, size, progress=False)
    y = np.array([classes.index(p.name.split("_")[0]) for p in train])
    rows = []
    for r in range(repeats):
        pred = train_predict(x, y, test_x, len(classes), 1000 * seed + r, epochs, size, cosine=True)
        f1 = f1_score(test_y, pred, labels=range(len(classes)), average=None, zero_division=0)
        rows.append({"accuracy": float(accuracy_score(test_y, pred)), "macro_f1": float(np.mean(f1)), "f1": f1})
    return {
        "accuracy": round(float(np.mean([r["accuracy"] for r in rows])), 4),
        "macro_f1": round(float(np.mean([r["macro_f1"] for r in rows])), 4),
        "f1": {c: round(float(np.mean([r["f1"][i] for r in rows])), 4) for i, c in enumerate(classes)},
        "repeats": [round(r["macro_f1"], 4) for r in rows],
        "train_images": len(train),
        "seconds": round(time.perf_counter() - t0, 1),
    }


# ---------------------------------------------------------------- report


def plot(result: dict, path: Path) -> None:
    """Left: mean F1 of the five classes against real images per class (curve arms, seeds as dots). Right: paired
    differences arm - flip with 95 % t-intervals (every arm at the main level, transplant at every level)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result["summary"]
    levels = sorted(s["levels"], key=int)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.4), gridspec_kw={"width_ratios": [1, 1.3]})
    for k, arm in enumerate(result["settings"]["curve_arms"]):
        pts = [(int(lv), s["levels"][lv][arm]) for lv in levels if arm in s["levels"][lv]]
        if not pts:
            continue
        xs = [p[0] * (1 + 0.03 * (k - 1)) for p in pts]
        ax.plot(xs, [p[1]["mean"] for p in pts], "o-", label=arm)
        for x, (_, r) in zip(xs, pts):
            ax.scatter([x] * len(r["macro_f1"]), r["macro_f1"], s=8, c="k", alpha=0.4, zorder=3)
    ax.set_xscale("log")
    ax.set_xlim(int(levels[0]) / 1.4, int(levels[-1]) * 1.4)  # one level: keep the arms' 3 % offsets small
    ax.minorticks_off()
    ax.set_xticks([int(lv) for lv in levels], levels)
    ax.set_xlabel("real training images per class")
    ax.set_ylabel("mean F1 of the 5 classes (real test crops)")
    ax.set_title(f"+ {result['settings']['extra']} extra images per class")
    ax.legend(fontsize=8)
    rows = [
        (f"{arm} @{result['settings']['main_level']}", d)
        for arm, d in s["vs_flip"].get(str(result["settings"]["main_level"]), {}).items()
    ]
    rows += [
        (f"transplant @{lv}", s["vs_flip"][lv]["transplant"])
        for lv in levels
        if lv != str(result["settings"]["main_level"]) and "transplant" in s["vs_flip"].get(lv, {})
    ]
    rows = [(name, d) for name, d in rows if d["per_seed"] and not name.startswith("real")]
    for i, (_, d) in enumerate(rows):
        lo, hi = d["ci95"]
        if np.isfinite(lo):
            bx.plot([lo, hi], [i, i], c="#4477aa", lw=2)
        bx.scatter(d["per_seed"], [i] * len(d["per_seed"]), s=10, c="k", alpha=0.5, zorder=3)
        bx.scatter([d["mean"]], [i], marker="D", c="#cc3311", zorder=4)
    bx.axvline(0, c="k", lw=0.8)
    bx.axvline(0.03, c="k", ls="--", lw=0.8)
    bx.set_yticks(range(len(rows)), [name for name, _ in rows], fontsize=8)
    bx.invert_yaxis()
    bx.set_xlabel("arm - flip, mean F1, paired by seed (dots), mean (diamond), 95 % t-interval")
    bx.set_title("paired differences against flip copies (dashed: target +0.03)")
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


def markdown(result: dict) -> str:
    """Tables: per level and arm the mean F1 per seed, mean +- sd and per-class F1; paired differences vs flip."""
    s, st = result["summary"], result["settings"]
    classes = st["classes"]
    lines = [
        f"eval on the {st['eval']} crops; custom_cnn {st['size']} px, {st['epochs']} epochs, flips, cosine lr, "
        f"{st['repeats']} trainings per seed averaged; "
        f"+{st['extra']} extra images per class; code {result['code']['sources_sha256'][:12]} "
        f"(git {str(result['code']['git_commit'])[:7]}{'' if result['code']['git_clean'] else ', dirty'}).",
        "",
        "| real/class | arm | mean F1 per seed | mean ± sd | " + " | ".join(classes) + " |",
        "|---|---|---|---|" + "---|" * len(classes),
    ]
    for lv in sorted(s["levels"], key=int):
        for arm, r in s["levels"][lv].items():
            lines.append(
                f"| {lv} | {arm} | {', '.join(f'{v:.3f}' for v in r['macro_f1'])} | {r['mean']:.3f} ± {r['sd']:.3f} | "
                + " | ".join(f"{r['f1'][c]:.2f}" for c in classes)
                + " |"
            )
    lines += ["", "| real/class | arm − flip | per seed | mean | 95 % t-interval |", "|---|---|---|---|---|"]
    for lv in sorted(s["vs_flip"], key=int):
        for arm, d in s["vs_flip"][lv].items():
            lines.append(
                f"| {lv} | {arm} | {', '.join(f'{v:+.3f}' for v in d['per_seed'])} | "
                f"{d['mean']:+.3f} | [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}] |"
            )
    lines += [
        "",
        f"Target (transplant − flip at {st['main_level']}: ≥ +0.03, interval above 0): "
        + ("met" if s["target_met"] else "not met")
        + ".",
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sample", type=Path, default=sample_home())
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out" / "naturalize-gain")
    ap.add_argument("--eval", choices=("test", "dev"), default="test", help="dev: for tuning (see above)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--main-level", type=int, default=50, help="real images per class where every arm runs")
    ap.add_argument("--levels", default="25,50,100", help="real images per class of the curve")
    ap.add_argument("--arms", default=",".join(ARMS), help=f"arms at --main-level, of {', '.join(ARMS)}")
    ap.add_argument("--curve-arms", default="real,flip,transplant", help="arms at every --levels")
    ap.add_argument(
        "--curve-seeds", type=int, default=0, help="seeds of the levels other than --main-level (0: --seeds)"
    )
    ap.add_argument("--extra", type=int, default=400, help="extra images per class (400: chosen on the dev part)")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=3, help="trainings per seed and arm, their F1 averaged")
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args(argv)
    release = a.sample / "PBC_dataset_normal_DIB"
    if not release.is_dir():
        ap.error(f"{release} not found; pass --sample DIR (or set NATURALIZE_SAMPLE)")
    arms, curve_arms = a.arms.split(","), a.curve_arms.split(",")
    levels = sorted({int(x) for x in a.levels.split(",")} | {a.main_level})
    for arm in arms + curve_arms:
        if arm not in ARMS:
            ap.error(f"--arms/--curve-arms: unknown arm {arm!r}; use {', '.join(ARMS)}")
    if "flip" not in arms or "flip" not in curve_arms:
        ap.error("--arms and --curve-arms need flip (the paired differences are taken against it)")
    if max(levels) > POOL:
        ap.error(f"--levels: at most {POOL} real images per class (the training pool)")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from realism import split_parts

    from classify.images import decode_all

    classes = list(AUGMENTED_CLASSES)
    out = a.out.resolve()
    code = code_version()
    version = {k: code[k] for k in ("protocol", "sources_sha256")}  # what the stamps hold (git commit: reported)
    t0 = time.perf_counter()
    settings = {
        "eval": a.eval, "classes": classes, "parts": PARTS, "extra": a.extra, "epochs": a.epochs, "size": a.size,
        "model": "custom_cnn", "lr": "cosine", "repeats": a.repeats, "pool": POOL, "main_level": a.main_level,
        "levels": levels, "arms": arms, "curve_arms": curve_arms,
        "seeds": list(range(a.seeds)), "curve_seeds": list(range(min(a.curve_seeds or a.seeds, a.seeds))),
    }  # fmt: skip
    result: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": f"{machine()}, no GPU",
        "load_before": round(os.getloadavg()[0], 2),
        "code": code,
        "settings": settings,
    }
    parts = split_parts(release, classes, PARTS)
    donor_pool: dict[str, list[Path]] = {}
    if any(donors_of(src) for arm in arms + curve_arms for src, _ in ARMS[arm]):
        from naturalize.realism.data import gather

        found = gather(release, "--sample", DONOR_CLASSES)
        donor_pool = {c: [found.paths[i] for i in found.of(c)] for c in DONOR_CLASSES}
    # the jobs, most important first: every arm at the main level, then the curve
    curve_seeds = min(a.curve_seeds or a.seeds, a.seeds)
    plan = [(a.main_level, arms, a.seeds)] + [(lv, curve_arms, curve_seeds) for lv in levels if lv != a.main_level]
    runs: dict[str, dict[str, list[dict]]] = {str(lv): {arm: [] for arm in arm_list} for lv, arm_list, _ in plan}
    name = f"gain-{a.eval}"

    def tree_and_bank(paths: list[Path], stamp: dict) -> tuple[Path, dict]:
        """(the classical bank of `paths`, its stamp): a symlink tree stamped `stamp`, then its bank."""
        tree = stamped_dir(out / "trees", stamp, lambda tmp: link_images(paths, release, tmp))
        bank_stamp = stamp | {"kind": "bank", "backend": "classical"}
        build = lambda tmp: segment_into(tree / "PBC_dataset_normal_DIB", tmp / "bank", a.workers)  # noqa: E731
        return stamped_dir(out / "banks", bank_stamp, build) / "bank", bank_stamp

    for level, arm_list, n_seeds in plan:
        for seed in range(n_seeds):
            pool, test = seed_split(parts, classes, seed, a.eval)
            real = {c: pool[c][:level] for c in classes}
            test_paths = [p for c in classes for p in test[c]]
            test_y = np.array([classes.index(c) for c in classes for _ in test[c]])
            test_x = decode_all(test_paths, a.size, progress=False)
            rel = lambda ps: [str(p.relative_to(release)) for p in ps]  # noqa: E731
            images = {c: rel(real[c]) for c in classes}
            base = {"code": version, "images": images}
            real_paths = [p for ps in real.values() for p in ps]
            bank, bank_stamp = tree_and_bank(real_paths, base)
            for arm in arm_list:
                train = [p for c in classes for p in real[c]]
                sources = []
                for source, n in arm_counts(arm, a.extra):
                    src_bank, src_stamp = bank, bank_stamp
                    if n_donors := donors_of(source):  # a bank with other classes' scenes too
                        donors = pick_donors(donor_pool, n_donors, seed)
                        src_bank, src_stamp = tree_and_bank(real_paths + donors, base | {"donors": rel(donors)})
                    ex_stamp = src_stamp | {"kind": "extra", "source": source, "settings": EXTRAS[source],
                                            "n": a.extra, "seed": seed}  # fmt: skip
                    made = extra_images(source, real, src_bank, a.extra, seed, out / "extra", ex_stamp, a.workers)
                    train += [p for c in classes for p in made[c][:n]]
                    sources.append([stamp_key(ex_stamp), n])
                run_stamp = {
                    "code": version, "kind": "run", "images": images, "sources": sources,
                    "test": rel(test_paths), "seed": seed, "epochs": a.epochs, "size": a.size, "model": "custom_cnn",
                    "lr": "cosine", "repeats": a.repeats,
                }  # fmt: skip
                r = stamped_json(
                    out / "runs",
                    run_stamp,
                    lambda train=train, x=test_x, y=test_y, seed=seed: train_score(
                        train, classes, x, y, seed, a.epochs, a.size, a.repeats
                    ),
                )
                runs[str(level)][arm].append(r | {"seed": seed})
                print(json.dumps({"level": level, "seed": seed, "arm": arm, "macro_f1": r["macro_f1"], "f1": r["f1"]}),
                      flush=True)  # fmt: skip
                result |= {"runs": runs, "summary": summary(runs, classes, a.main_level)}
                result |= {"wall_s": round(time.perf_counter() - t0, 1), "load_after": round(os.getloadavg()[0], 2)}
                write_json(out / f"{name}.json", result)
                write_text(out / f"{name}.md", markdown(result))
                plot(result, out / f"{name}.png")
    print(markdown(result))
    print(f"wrote {out / name}.json, .md, .png")
    return result


if __name__ == "__main__":
    main()
