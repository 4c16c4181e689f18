"""Realism of `naturalize compose`: a classifier two-sample test (can a small CNN tell real from synthetic?).

    python benchmarks/realism.py [--sample DIR] [--n 150] [--others 60] [--seeds 3] [--epochs 12]
        [--rbc 8,16] [--out bench-out/compose-realism]

1. The sample's PMY images are split in two by seed: half are cut into a sprite bank (with --others images
   of other classes for more red cells and backgrounds) by `naturalize segment --backend classical`; the
   other half is the real side of the test, so no synthetic image shows a real test image's cell.
2. For each red-cell count in --rbc (8: the paper's; 16: the median count of OI-PBC boxes per real image,
   border-cut cells included), --n synthetic PMY images each: Naturalize (`compose`, default settings
   otherwise) and the paper's Algorithm 1 (benchmarks/naive_compose.py), from the same bank.
3. For each method and seed: real (0) vs synthetic (1) images at 96x96, a stratified 60/40 split, a small
   Keras CNN (3 conv layers) trained for --epochs on the 60 %, ROC AUC (scikit-learn) on the 40 %.
   AUC 0.5: the CNN cannot tell them apart; 1.0: it always can. Target for Naturalize: mean AUC <= 0.75.
Prints one JSON object (also OUT/realism.json) and draws OUT/realism.png (AUC per method and seed) and
OUT/sheet.png (real beside Naturalize images with the first count).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


def split_sources(release: Path, n: int, others: int, seed: int) -> tuple[list[Path], list[Path]]:
    """(images for the bank, held-out real PMY images): PMY halves by seed, plus `others` other images."""
    from naturalize.classes import class_of_prefix

    pmy = sorted(p for p in release.glob("*/*.jpg") if class_of_prefix(p.name) == "PMY")
    rng = np.random.default_rng(seed)
    pmy = [pmy[i] for i in rng.permutation(len(pmy))]
    held, bank_pmy = pmy[:n], pmy[n:]
    rest = sorted(p for p in release.glob("*/*.jpg") if class_of_prefix(p.name) in ("LY", "SNE", "MY", "MMY", "BNE"))
    extra = [rest[i] for i in rng.permutation(len(rest))[:others]]
    return bank_pmy + extra, held


def make_bank(images: list[Path], release: Path, out: Path) -> Path:
    """Segment `images` (linked into a temporary release-layout tree) into a bank at `out`."""
    if (out / "bank.json").is_file():
        return out
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "PBC_dataset_normal_DIB"
        for p in images:
            d = tree / p.parent.name
            d.mkdir(parents=True, exist_ok=True)
            (d / p.name).symlink_to(p.resolve())
        subprocess.run([sys.executable, "-m", "naturalize.cli", "segment", str(tree), "--out", str(out),
                        "--backend", "classical", "--workers", "2", "--no-progress"], check=True)
    return out


def load96(paths: list[Path]) -> np.ndarray:
    import cv2

    return np.stack([cv2.resize(cv2.imread(str(p))[:, :, ::-1], (96, 96), interpolation=cv2.INTER_AREA)
                     for p in paths]).astype(np.float32) / 255.0


def two_sample_auc(real: np.ndarray, syn: np.ndarray, seed: int, epochs: int) -> float:
    """Held-out ROC AUC of a small CNN trained to tell `syn` (1) from `real` (0)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    keras.utils.set_random_seed(seed)
    x = np.concatenate([real, syn])
    y = np.concatenate([np.zeros(len(real)), np.ones(len(syn))]).astype(np.float32)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.4, stratify=y, random_state=seed)
    model = keras.Sequential([
        keras.Input((96, 96, 3)),
        keras.layers.Conv2D(16, 3, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    model.fit(xtr, ytr, epochs=epochs, batch_size=32, verbose=0)
    return float(roc_auc_score(yte, model.predict(xte, verbose=0).ravel()))


def draw(result: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = list(result["by_rbc"])
    fig, ax = plt.subplots(figsize=(1.6 + 2.2 * len(counts), 3.4))
    for j, rbc in enumerate(counts):
        for i, (name, key) in enumerate([("Naturalize", "naturalize"), ("Algorithm 1", "algorithm1")]):
            aucs = result["by_rbc"][rbc][key]["auc"]
            x = 3 * j + i
            ax.bar(x, np.mean(aucs), color=["#4477aa", "#bbbbbb"][i], alpha=0.8, label=name if j == 0 else None)
            ax.scatter([x] * len(aucs), aucs, c="k", s=12, zorder=3)
            ax.text(x, np.mean(aucs) + 0.02, f"{np.mean(aucs):.2f}", ha="center")
    ax.axhline(0.75, ls="--", c="k", lw=0.8)
    ax.axhline(0.5, ls=":", c="k", lw=0.8)
    ax.set_xticks([3 * j + 0.5 for j in range(len(counts))], [f"{c} RBC / image" for c in counts])
    ax.set_ylim(0.4, 1.05)
    ax.set_ylabel("real-vs-synthetic AUC (held out)")
    ax.set_title("classifier two-sample test, PMY, 96 px")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sample", type=Path, default=Path(os.environ.get("NATURALIZE_SAMPLE", REPO.parent / "shared" / "pbc-sample")))
    ap.add_argument("--n", type=int, default=150)
    ap.add_argument("--others", type=int, default=60)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--rbc", default="8,16", help="Red cells per image, one test per count (the first is the headline).")
    ap.add_argument("--out", type=Path, default=REPO / "bench-out" / "compose-realism")
    a = ap.parse_args()
    from naive_compose import naive_compose

    from naturalize.bank import Bank
    from naturalize.compose.params import ComposeParams
    from naturalize.compose.preview import contact_sheet
    from naturalize.compose.run import compose_class

    release = a.sample / "PBC_dataset_normal_DIB"
    a.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    bank_images, held = split_sources(release, a.n, a.others, seed=0)
    bank = make_bank(bank_images, release, a.out / "bank")
    real = load96(held)
    result: dict = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "load_before": os.getloadavg()[0],
                    "real_images": len(held), "synthetic_images": a.n, "bank_images": len(bank_images),
                    "epochs": a.epochs, "seeds": a.seeds, "by_rbc": {}}
    for rbc in (int(t) for t in a.rbc.split(",")):
        shutil.rmtree(a.out / f"ours-rbc{rbc}", ignore_errors=True)
        ours = compose_class(bank, "PMY", a.n, a.out / f"ours-rbc{rbc}", seed=0, params=ComposeParams(rbc=rbc),
                             workers=2, progress=False)
        naive = naive_compose(Bank.open(bank), "PMY", a.n, a.out / f"naive-rbc{rbc}", rbc=rbc)
        row = {}
        for key, paths in (("naturalize", ours), ("algorithm1", naive)):
            syn = load96(paths)
            aucs = [two_sample_auc(real, syn, seed, a.epochs) for seed in range(a.seeds)]
            row[key] = {"auc": [round(v, 3) for v in aucs], "mean_auc": round(float(np.mean(aucs)), 3),
                        "std_auc": round(float(np.std(aucs)), 3)}
        result["by_rbc"][str(rbc)] = row
        print(json.dumps({f"rbc={rbc}": row}), flush=True)
    first = result["by_rbc"][a.rbc.split(",")[0]]
    result["naturalize"], result["algorithm1"] = first["naturalize"], first["algorithm1"]
    result["target_auc<=0.75"] = result["naturalize"]["mean_auc"] <= 0.75
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    result["load_after"] = os.getloadavg()[0]
    (a.out / "realism.json").write_text(json.dumps(result, indent=2) + "\n")
    draw(result, a.out / "realism.png")
    with tempfile.TemporaryDirectory() as tmp:  # real beside synthetic, by eye
        for p in held[:24]:
            (Path(tmp) / p.name).symlink_to(p)
        contact_sheet(a.out / f"ours-rbc{a.rbc.split(',')[0]}", a.out / "sheet.png", n=24, real=Path(tmp))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
