"""Realism and train-on-synthetic of `naturalize compose`, on top of `naturalize realism`.

    python benchmarks/realism.py [--sample DIR] [--classes BNE,MMY,MY,PMY,SNE] [--bank 150] [--dev 40]
        [--test 60] [--seeds 5] [--epochs 30] [--size 128] [--scenes transplant,matched,paper]
        [--tstr-n 150] [--tstr-size 96] [--tstr-epochs 20] [--tstr-seeds 3] [--only all|tstr|critic]
        [--part test|dev] [--no-algorithm1] [--out bench-out/realism]

A method (--scenes, comma-separated) is a scene with white-cell variety switches joined by '+':
`transplant`, `transplant+scale+stain`, `transplant+warp`, `transplant+focus`, `transplant+all` (all four),
`matched`, `paper` (switches: scale, stain, warp, focus: compose --wbc-*). A plain scene name is the scene
with ComposeParams' defaults.

1. Per class, the sample's images are de-duplicated (same bytes: one copy) and cut by seed 0 into a bank
   part (--bank images, segmented with `naturalize segment --backend classical` into one sprite bank), a dev
   part (--dev: for tuning) and a test part (--test): real crops no bank ever saw. --part dev runs the critic
   on the dev part (choose settings there), --part test (default) on the test part (report those figures).
2. Per class, as many synthetic images as the test part holds: Naturalize with each --scenes (`compose
   --scene`, seed 0), and the paper's Algorithm 1 (benchmarks/naive_compose.py; usable sprites only).
3. `naturalize realism` (naturalize.realism.realism) of the test part against each synthetic set: critic
   at --size px, --epochs epochs with flips, --seeds seeds; real vs real in the same run (with the first).
4. Train on synthetic, test on real (TSTR): the paper's custom CNN (classify registry, from scratch, flips)
   at --tstr-size px, trained --tstr-epochs epochs on --tstr-n composites per class of a scene only (seed 1,
   from the same bank), or on as many real crops of the bank part per class (train on real), scored on the
   real test part: accuracy and macro-F1 (scikit-learn), per seed (--tstr-seeds).
Prints one JSON object (also OUT/realism.json) and draws OUT/realism.png; each critic's own report
(auc.png, saliency.png, realism.json) is in OUT/critic-<method>/.
Targets: pooled AUC <= 0.60 for the default scene, >= 0.10 below Algorithm 1, per class <= 0.65;
TSTR accuracy >= 0.8 x train-on-real.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from naturalize.compose.params import ComposeParams
from naturalize.testing import machine, sample_home

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


VARIETY = ("scale", "stain", "warp", "focus")


def method_params(method: str) -> ComposeParams:
    """ComposeParams of a method 'scene[+switch...]' (module doc); SystemExit naming a bad one."""
    scene, *switches = method.split("+")
    if "all" in switches:
        switches = list(VARIETY)
    bad = [s for s in switches if s not in VARIETY]
    if bad:
        raise SystemExit(f"--scenes {method!r}: unknown switch {bad[0]!r}; use {', '.join(VARIETY)} or all")
    on: dict[str, Any] = {f"wbc_{s}": True for s in switches}
    return replace(ComposeParams(scene=scene), **on)


def split_parts(release: Path, classes: list[str], sizes: tuple[int, int, int]) -> dict[str, dict[str, list[Path]]]:
    """part ('bank', 'dev', 'test') -> class -> paths: each class de-duplicated, shuffled by seed 0, cut."""
    from naturalize.realism.data import gather

    images = gather(release, "--sample", tuple(classes))
    parts: dict[str, dict[str, list[Path]]] = {"bank": {}, "dev": {}, "test": {}}
    for c in classes:
        paths = [images.paths[i] for i in images.of(c)]
        paths = [paths[i] for i in np.random.default_rng([0, len(paths)]).permutation(len(paths))]
        nb, nd, nt = sizes
        if nb + nd + nt > len(paths):
            raise SystemExit(f"{c}: {len(paths)} distinct images, fewer than --bank + --dev + --test = {nb + nd + nt}")
        parts["bank"][c], parts["dev"][c], parts["test"][c] = (
            paths[:nb],
            paths[nb : nb + nd],
            paths[nb + nd : nb + nd + nt],
        )
    return parts


def link_tree(paths: list[Path], out: Path, release: Path) -> Path:
    """A release-layout tree of symlinks to `paths` (read in place, never copied)."""
    for p in paths:
        d = out / p.relative_to(release).parent
        d.mkdir(parents=True, exist_ok=True)
        if not (d / p.name).exists():
            (d / p.name).symlink_to(p.resolve())
    return out


def make_bank(tree: Path, out: Path) -> Path:
    """Segment the tree into a bank (resumed when it is there)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "naturalize.cli",
            "segment",
            str(tree),
            "--out",
            str(out),
            "--backend",
            "classical",
            "--workers",
            "2",
            "--no-progress",
        ],
        check=True,
    )
    return out


def train_predict(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    n_classes: int,
    seed: int,
    epochs: int,
    size: int,
    cosine: bool = False,
) -> np.ndarray:
    """Predicted classes of the test images by the paper's custom CNN (classify's registry, from scratch, random
    flips of every training image each epoch, Adam 1e-3, with `cosine` decayed to 0 over the run) trained on
    (train_x, train_y); shared with naturalize_gain.py."""
    import keras

    from classify.models import create_model

    keras.utils.set_random_seed(seed)
    model = create_model("custom_cnn", n_classes, image_size=size)
    steps = epochs * -(-len(train_x) // 32)
    lr = keras.optimizers.schedules.CosineDecay(1e-3, steps) if cosine else 1e-3
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(seed)
    for _ in range(epochs):  # flips drawn per image and epoch
        x = train_x.copy()
        flip = rng.random((2, len(x))) < 0.5
        x[flip[0]] = x[flip[0], :, ::-1]
        x[flip[1]] = x[flip[1], ::-1]
        model.fit(x.astype(np.float32), train_y, epochs=1, batch_size=32, verbose=0, shuffle=True)
    pred = np.argmax(model.predict(test_x.astype(np.float32), batch_size=64, verbose=0), axis=1)
    keras.backend.clear_session()
    return pred


def tstr(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, seed: int, epochs: int, size: int
) -> dict:
    """Accuracy and macro-F1 on the test images of `train_predict`'s classifier trained on (train_x, train_y)."""
    from sklearn.metrics import accuracy_score, f1_score

    pred = train_predict(train_x, train_y, test_x, int(train_y.max()) + 1, seed, epochs, size)
    return {
        "accuracy": round(float(accuracy_score(test_y, pred)), 4),
        "macro_f1": round(float(f1_score(test_y, pred, average="macro")), 4),
    }


def draw(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(result["critic"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    ax = axes[0]
    methods_shown = methods + (["real_vs_real"] if "real_vs_real" in result else [])
    for i, m in enumerate(methods_shown):
        pooled = result["critic"][m]["pooled"]["real_vs_synthetic"] if m != "real_vs_real" else result["real_vs_real"]
        v = [a for a in pooled["auc"] if a is not None]
        ax.bar(i, np.mean(v), color="#bbbbbb" if m in ("algorithm1", "real_vs_real") else "#4477aa")
        ax.scatter([i] * len(v), v, c="k", s=10, zorder=3)
        ax.text(i, np.mean(v) + 0.02, f"{np.mean(v):.2f}", ha="center")
    ax.axhline(0.6, ls="--", c="k", lw=0.8)
    ax.axhline(0.5, ls=":", c="k", lw=0.8)
    ax.set_xticks(range(len(methods_shown)), [m.replace("_", " ") for m in methods_shown])
    ax.set_ylim(0.3, 1.05)
    ax.set_ylabel("critic AUC, held out (test part)")
    ax.set_title(f"{', '.join(result['classes'])}: real vs synthetic")
    ax = axes[1]
    arms = list(result["tstr"])
    for i, arm in enumerate(arms):
        v = [r["accuracy"] for r in result["tstr"][arm]]
        ax.bar(i, np.mean(v), color="#bbbbbb" if arm == "real" else "#4477aa")
        ax.scatter([i] * len(v), v, c="k", s=10, zorder=3)
        ax.text(i, np.mean(v) + 0.02, f"{np.mean(v):.2f}", ha="center")
    ax.set_xticks(range(len(arms)), [f"train on {a}" for a in arms])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy on real test crops")
    ax.set_title("train on synthetic, test on real")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sample", type=Path, default=sample_home())
    ap.add_argument("--classes", default="BNE,MMY,MY,PMY,SNE")
    ap.add_argument("--bank", type=int, default=150)
    ap.add_argument("--dev", type=int, default=40)
    ap.add_argument("--test", type=int, default=60)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--scenes", default="transplant,matched,paper")
    ap.add_argument("--tstr-epochs", type=int, default=20)
    ap.add_argument("--tstr-n", type=int, default=0, help="images per class of each TSTR arm (0: --bank)")
    ap.add_argument("--tstr-size", type=int, default=96)
    ap.add_argument(
        "--only",
        choices=("all", "tstr", "critic"),
        default="all",
        help="tstr: rerun only train-on-synthetic into an earlier run's OUT (its bank and parts); critic: no TSTR",
    )
    ap.add_argument("--part", choices=("test", "dev"), default="test", help="real part the critic is run on")
    ap.add_argument("--no-baseline", action="store_true", help="leave real vs real out (run it in another part)")
    ap.add_argument("--no-algorithm1", action="store_true", help="leave Algorithm 1 out (e.g. tuning on dev)")
    ap.add_argument(
        "--name", default="", help="--only critic: results in OUT/realism[-dev]-NAME.json (runs side by side)"
    )
    ap.add_argument("--tstr-seeds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "bench-out" / "realism")
    a = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from naive_compose import naive_compose

    from classify.images import decode_all
    from naturalize.bank import Bank
    from naturalize.compose.run import compose_class
    from naturalize.realism.critic import CriticParams
    from naturalize.realism.run import realism

    classes = a.classes.split(",")
    release = a.sample / "PBC_dataset_normal_DIB"
    a.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    parts = split_parts(release, classes, (a.bank, a.dev, a.test))
    trees = {
        name: link_tree(
            [p for c in classes for p in part[c]], a.out / f"real-{name}" / "PBC_dataset_normal_DIB", release
        )
        for name, part in parts.items()
    }
    bank = make_bank(trees["bank"], a.out / "bank")
    b = Bank.open(bank)
    result: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": f"{machine()}, no GPU",
        "load_before": round(os.getloadavg()[0], 2),
        "classes": classes,
        "images_per_class": {"bank": a.bank, "dev": a.dev, "test": a.test},
        "part": a.part,
        "bank": {
            "sources": len({r.source for r in b.sprites}),
            "sprites": len(b.sprites),
            "build_s": round(time.perf_counter() - t0, 1),
        },
        "critic": {},
        "tstr": {},
        "args": {k: str(v) for k, v in vars(a).items()},
    }
    synthetic: dict[str, Path] = {}
    n_part = a.test if a.part == "test" else a.dev
    tag = "" if a.part == "test" else "-dev"
    for method in a.scenes.split(","):
        out = a.out / f"syn{tag}-{method}"
        for c in classes:
            compose_class(bank, c, n_part, out, seed=0, params=method_params(method), workers=2, progress=False)
        synthetic[method] = out
    if a.only == "tstr":
        if not (a.out / "realism.json").is_file():
            raise SystemExit(
                f"--only tstr needs an earlier full run in {a.out} (realism.json); run without --only first"
            )
        result = json.loads((a.out / "realism.json").read_text()) | {
            "tstr": {},
            "tstr_date": result["date"],
            "tstr_load_before": result["load_before"],
        }
    else:
        if not a.no_algorithm1:
            for c in classes:
                naive_compose(b, c, n_part, a.out / f"syn{tag}-algorithm1", seed=0)
            synthetic["algorithm1"] = a.out / f"syn{tag}-algorithm1"
        params = CriticParams(size=a.size, epochs=a.epochs)
        for n, (method, folder) in enumerate(synthetic.items()):
            r = realism(
                trees[a.part],
                folder,
                a.out / f"critic{tag}-{method}",
                seeds=a.seeds,
                classes=tuple(classes),
                params=params,
                baseline=n == 0 and not a.no_baseline,
                progress=False,
            )
            result["critic"][method] = {"pooled": r["pooled"], "per_class": r["per_class"]}
            if n == 0 and not a.no_baseline:
                result["real_vs_real"] = r["pooled"]["real_vs_real"]
            print(json.dumps({method: r["pooled"], "per_class": r["per_class"]}), flush=True)
    if a.only == "critic":
        result["wall_s"] = round(time.perf_counter() - t0, 1)
        result["load_after"] = round(os.getloadavg()[0], 2)
        name = f"realism{tag}" + (f"-{a.name}" if a.name else "")
        (a.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
        return
    # train on synthetic / on real (bank part, same count per class), test on the real test part
    n_tstr = a.tstr_n or a.bank
    test_paths = [p for c in classes for p in parts["test"][c]]
    test_y = np.array([classes.index(c) for c in classes for _ in parts["test"][c]])
    test_x = decode_all(test_paths, a.tstr_size, progress=False)
    arms = {"real": [p for c in classes for p in parts["bank"][c][:n_tstr]]}
    for method in a.scenes.split(","):
        out = a.out / f"tstr-{method}"
        arms[method] = [
            q
            for c in classes
            for q in compose_class(
                bank, c, n_tstr, out, seed=1, params=method_params(method), workers=2, progress=False
            )
        ]
    result["tstr_setup"] = {
        "model": "custom_cnn",
        "size": a.tstr_size,
        "epochs": a.tstr_epochs,
        "per_class": n_tstr,
        "flips": True,
        "test_images": len(test_paths),
    }
    for arm, paths in arms.items():
        y = np.array([classes.index(p.name.split("_")[0]) for p in paths])
        x = decode_all(paths, a.tstr_size, progress=False)
        result["tstr"][arm] = [
            tstr(x, y, test_x, test_y, seed, a.tstr_epochs, a.tstr_size) for seed in range(a.tstr_seeds)
        ]
        print(json.dumps({f"tstr {arm}": result["tstr"][arm]}), flush=True)
    real_acc = np.mean([r["accuracy"] for r in result["tstr"]["real"]])
    result["tstr_ratio"] = {
        s: round(float(np.mean([r["accuracy"] for r in result["tstr"][s]]) / real_acc), 3) for s in a.scenes.split(",")
    }
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    result["load_after"] = round(os.getloadavg()[0], 2)
    (a.out / "realism.json").write_text(json.dumps(result, indent=2) + "\n")
    draw(result, a.out / "realism.png")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
