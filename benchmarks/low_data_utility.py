"""Low-data utility of the default scene: with few real training images per class, do transplant composites
help a classifier more than flip/rotate copies of the same real images? (issue 10, item 5, reduced)

    python benchmarks/low_data_utility.py [--sample DIR] [--classes BNE,MMY,MY,PMY,SNE] [--real 50]
        [--extra 150] [--seeds 3] [--epochs 15] [--size 96] [--out bench-out/low-data]

Per seed s (the seed varies the real subsample, the bank, the composites, the flips and the training):
1. the de-duplicated images of each class are cut as in benchmarks/realism.py (seed 0: bank part 150,
   dev 40, test 40); --real images per class are drawn from the bank part by seed s and segmented into a
   bank of their own (classical backend), so composites hold only those images' cells;
2. three training sets per class: real (the --real images), flip (+ --extra flip/90-degree-turn copies of
   them, benchmarks/naturalize_gain.py's flip_copies), transplant (+ --extra `compose --scene transplant`
   images from that bank, seed s);
3. the paper's custom CNN (from scratch, flips each epoch, as benchmarks/realism.py's tstr) trained on each,
   scored on the 40 real test crops per class: accuracy and F1 per class (scikit-learn).
Prints one JSON object (also OUT/low_data.json): per arm and seed the scores, the paired difference
transplant - flip of the mean F1 of the classes per seed, its mean and 95 % t-interval; OUT/low_data.png.
Target (issue 10): at <= 50 real images per class, transplant beats flip by >= 0.03 with the interval above 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from naturalize.testing import sample_home

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))


def scores(
    train: list[Path], classes: list[str], test_x: np.ndarray, test_y: np.ndarray, seed: int, epochs: int, size: int
) -> dict:
    """Accuracy, macro-F1 and per-class F1 of the custom CNN trained on `train` (class = file-name prefix)."""
    import keras
    from sklearn.metrics import accuracy_score, f1_score

    from classify.images import decode_all
    from classify.models import create_model

    x = decode_all(train, size, progress=False)
    y = np.array([classes.index(p.name.split("_")[0]) for p in train])
    keras.utils.set_random_seed(seed)
    model = create_model("custom_cnn", len(classes), image_size=size)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        xe = x.copy()
        flip = rng.random((2, len(xe))) < 0.5
        xe[flip[0]] = xe[flip[0], :, ::-1]
        xe[flip[1]] = xe[flip[1], ::-1]
        model.fit(xe.astype(np.float32), y, epochs=1, batch_size=32, verbose=0, shuffle=True)
    pred = np.argmax(model.predict(test_x.astype(np.float32), batch_size=64, verbose=0), axis=1)
    keras.backend.clear_session()
    f1 = f1_score(test_y, pred, labels=range(len(classes)), average=None)
    return {
        "accuracy": round(float(accuracy_score(test_y, pred)), 4),
        "macro_f1": round(float(np.mean(f1)), 4),
        "f1": {c: round(float(v), 4) for c, v in zip(classes, f1)},
        "train_images": len(train),
    }


def t_interval(d: list[float]) -> list[float]:
    """95 % t-interval of the mean of paired differences (scipy)."""
    from scipy import stats

    if len(d) < 2:
        return [float("nan"), float("nan")]
    m, se = float(np.mean(d)), float(np.std(d, ddof=1) / np.sqrt(len(d)))
    h = float(stats.t.ppf(0.975, len(d) - 1)) * se
    return [round(m - h, 4), round(m + h, 4)]


def draw(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(result["arms"])
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for i, arm in enumerate(arms):
        v = [r["macro_f1"] for r in result["arms"][arm]]
        ax.bar(i, np.mean(v), color="#bbbbbb" if arm != "transplant" else "#4477aa")
        ax.scatter([i] * len(v), v, c="k", s=10, zorder=3)
        ax.text(i, np.mean(v) + 0.02, f"{np.mean(v):.3f}", ha="center")
    ax.set_xticks(range(len(arms)), arms)
    ax.set_ylim(0, 1)
    ax.set_ylabel("mean F1 of the classes, real test crops")
    ax.set_title(f"{result['real_per_class']} real + {result['extra_per_class']} extra images per class")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sample", type=Path, default=sample_home())
    ap.add_argument("--classes", default="BNE,MMY,MY,PMY,SNE")
    ap.add_argument("--real", type=int, default=50)
    ap.add_argument("--extra", type=int, default=150)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--out", type=Path, default=REPO / "bench-out" / "low-data")
    a = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from naturalize_gain import flip_copies
    from realism import link_tree, make_bank, split_parts

    from classify.images import decode_all
    from naturalize.compose.params import ComposeParams
    from naturalize.compose.run import compose_class

    classes = a.classes.split(",")
    release = a.sample / "PBC_dataset_normal_DIB"
    a.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    parts = split_parts(release, classes, (150, 40, 40))
    test = [p for c in classes for p in parts["test"][c]]
    test_y = np.array([classes.index(c) for c in classes for _ in parts["test"][c]])
    test_x = decode_all(test, a.size, progress=False)
    result: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": f"{os.cpu_count()}-core CPU, no GPU",
        "load_before": round(os.getloadavg()[0], 2),
        "classes": classes,
        "real_per_class": a.real,
        "extra_per_class": a.extra,
        "test_images": len(test),
        "model": "custom_cnn",
        "size": a.size,
        "epochs": a.epochs,
        "arms": {"real": [], "flip": [], "transplant": []},
    }
    for seed in range(a.seeds):
        rng = np.random.default_rng([seed, 0x10])
        real = {
            c: [parts["bank"][c][i] for i in sorted(rng.choice(len(parts["bank"][c]), a.real, replace=False))]
            for c in classes
        }
        work = a.out / f"seed{seed}"
        tree = link_tree([p for c in classes for p in real[c]], work / "real" / "PBC_dataset_normal_DIB", release)
        bank = make_bank(tree, work / "bank")
        flips = [q for c in classes for q in flip_copies(real[c], a.extra, work / "flip" / c, seed=seed)]
        syn = [
            q
            for c in classes
            for q in compose_class(
                bank,
                c,
                a.extra,
                work / "transplant",
                seed=seed,
                params=ComposeParams(scene="transplant"),
                workers=2,
                progress=False,
            )
        ]
        base = [p for c in classes for p in real[c]]
        for arm, train in (("real", base), ("flip", base + flips), ("transplant", base + syn)):
            r = scores(train, classes, test_x, test_y, seed, a.epochs, a.size)
            result["arms"][arm].append(r)
            print(json.dumps({"seed": seed, arm: r}), flush=True)
    d = [t["macro_f1"] - f["macro_f1"] for t, f in zip(result["arms"]["transplant"], result["arms"]["flip"])]
    result["transplant_minus_flip"] = {
        "per_seed": [round(x, 4) for x in d],
        "mean": round(float(np.mean(d)), 4),
        "ci95": t_interval(d),
    }
    result["target_met"] = bool(np.mean(d) >= 0.03 and result["transplant_minus_flip"]["ci95"][0] > 0)
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    result["load_after"] = round(os.getloadavg()[0], 2)
    (a.out / "low_data.json").write_text(json.dumps(result, indent=2) + "\n")
    draw(result, a.out / "low_data.png")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
