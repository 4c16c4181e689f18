"""Does Naturalize help on REAL, unseen test images? The evidence benchmark (issue 6).

Clean protocol on a PBC tree (default: the shared sample). Real images are split 80/10/10; the
training split is subsampled so its class proportions follow the full release (PMY ~3.5%, scarce as
in the paper); val and test stay real and whole. The same model is trained three ways:

    real      the subsampled real training images only
    natural   real + --per-class Naturalize images for BNE, MMY, MY, PMY, SNE, composed only from
              sprites of the (subsampled) training images
    flip      real + the same number of plain flip / 90-degree-rotation copies of real training images
              of those classes (separates "more images" from "Naturalize images")

each with --seeds seeds; scores are taken on the real test split: accuracy, macro-F1 and per-class
F1, mean and spread (min..max and standard deviation). With --paper it also runs the `paper` protocol
once (real + synthetic pooled, then split, the bank cut from every image) and reports how much its
own test score exceeds the real-only part of that test split and the clean `natural` arm.

    python benchmarks/naturalize_gain.py --out bench-out/naturalize-gain            # full default
    python benchmarks/naturalize_gain.py --image-size 64 --epochs 8 --seeds 1 --per-class 60   # quick

Outputs: OUT/results.json, OUT/results.md (tables) and OUT/f1_per_class.png (per-class F1 per arm),
plus every dataset tree and classifier run under OUT/ (reruns resume finished runs; --tag keeps the
runs and results of another training setting apart while sharing the data and extra images).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from naturalize.classes import AUGMENTED_CLASSES, CLASSES, RELEASE_COUNTS  # noqa: E402
from naturalize.fsio import atomic_open, link_or_copy, write_json, write_text  # noqa: E402
from naturalize.testing import sample_home  # noqa: E402

ARMS = ("real", "natural", "flip")
SAMPLE = sample_home()


def proportional_counts(available: dict[str, int], target: dict[str, int]) -> dict[str, int]:
    """Largest per-class counts <= available that follow `target`'s proportions (one common scale)."""
    scale = min(available[c] / target[c] for c in target if c in available)
    return {c: max(1, int(scale * target[c])) for c in target if c in available}


def subsample_train(records, seed: int):
    """Records with train images beyond the proportional counts marked excluded ('subsampled out')."""
    train = [r for r in records if r.split == "train" and not r.excluded]
    keep_n = proportional_counts(Counter(r.cls for r in train), RELEASE_COUNTS)
    keep: set[str] = set()
    for c in CLASSES:
        paths = sorted(r.path for r in train if r.cls == c)
        order = np.random.default_rng([seed, CLASSES.index(c), 7]).permutation(len(paths))
        keep.update(paths[i] for i in order[: keep_n.get(c, 0)])
    return [
        replace(r, excluded="subsampled out") if r.split == "train" and r.path not in keep else r for r in records
    ], keep_n


def flip_copies(sources: list[Path], n: int, out_dir: Path, seed: int) -> list[Path]:
    """`n` copies of real images (cycled) each under one of the 7 non-identity flips/90-degree turns (JPEG q75
    4:4:4, as the PBC files), always written anew (atomically): a file an earlier run left is never reused."""
    from PIL import Image

    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ops = rng.integers(1, 8, n)
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


def lay_out(out: Path, items: list[tuple[str, str, Path]]) -> None:
    """(Re)create out/{train,val,test}/<CLASS>/ with hard links (copies where links fail)."""
    for s in ("train", "val", "test"):
        shutil.rmtree(out / s, ignore_errors=True)
    for split, cls, src in items:
        dst = out / split / cls / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        link_or_copy(src, dst)


def scores_from_predictions(pred_csv: Path, keep=lambda path: True) -> dict:
    """Accuracy, macro-F1 and per-class F1 (scikit-learn) from a classify predictions.csv."""
    from sklearn.metrics import accuracy_score, f1_score

    rows = [r for r in csv.DictReader(pred_csv.open(encoding="utf-8")) if keep(r["path"])]
    y, p = [r["true"] for r in rows], [r["pred"] for r in rows]
    labels = [c for c in CLASSES if c in set(y)]
    f1 = f1_score(y, p, labels=labels, average=None, zero_division=0)
    return {
        "n": len(rows),
        "accuracy": float(accuracy_score(y, p)),
        "macro_f1": float(f1_score(y, p, labels=labels, average="macro", zero_division=0)),
        "f1": {c: float(v) for c, v in zip(labels, f1)},
    }


def train_eval(dataset: Path, run: Path, a, seed: int) -> dict:
    """Train the model on `dataset` into `run` (resumes) and score its test split."""
    from classify.evaluate import evaluate_run
    from classify.train import train

    pred = run / "eval" / "test" / "predictions.csv"
    if not pred.is_file():
        t0 = time.perf_counter()
        train(
            dataset,
            a.model,
            run,
            weights="none",
            epochs=a.epochs,
            batch_size=a.batch_size,
            lr=a.lr,
            image_size=a.image_size,
            seed=seed,
            evaluate=False,
            progress=False,
            workers=a.workers,
            log=lambda *_: None,
        )
        evaluate_run(run, "test", progress=False)
        write_json(run / "bench_seconds.json", {"seconds": time.perf_counter() - t0})
    return scores_from_predictions(pred)


def composed(folder: Path, n: int, seed: int) -> dict[str, list[Path]] | None:
    """The finished composition in `folder` (every image of every augmented class present), else None."""
    from naturalize.compose.run import image_name

    files = {c: [folder / c / image_name(c, seed, i, "jpg") for i in range(n)] for c in AUGMENTED_CLASSES}
    done = (folder / "manifest.jsonl").is_file() and all(p.is_file() for ps in files.values() for p in ps)
    return files if done else None


def summarize(per_seed: list[dict]) -> dict:
    """Mean, standard deviation, min and max of accuracy, macro-F1 and each class's F1 over seeds."""

    def stats(vals):
        v = np.asarray(vals, float)
        return {
            "mean": float(v.mean()),
            "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "min": float(v.min()),
            "max": float(v.max()),
        }

    return {
        "accuracy": stats([s["accuracy"] for s in per_seed]),
        "macro_f1": stats([s["macro_f1"] for s in per_seed]),
        "f1": {c: stats([s["f1"].get(c, 0.0) for s in per_seed]) for c in CLASSES},
    }


def plot(results: dict, path: Path) -> None:
    """Grouped bars: per-class F1 per arm (mean, error bar = min..max over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 4.5))
    width = 0.8 / len(ARMS)
    x = np.arange(len(CLASSES))
    for k, arm in enumerate(ARMS):
        if arm not in results["arms"]:
            continue
        f1 = results["arms"][arm]["summary"]["f1"]
        mean = np.array([f1[c]["mean"] for c in CLASSES])
        lo = mean - np.array([f1[c]["min"] for c in CLASSES])
        hi = np.array([f1[c]["max"] for c in CLASSES]) - mean
        m = results["arms"][arm]["summary"]["macro_f1"]["mean"]
        ax.bar(x + (k - 1) * width, mean, width, yerr=[lo, hi], capsize=2, label=f"{arm} (macro-F1 {m:.3f})")
    ax.set_xticks(x, [f"{c}\n(train {results['train_counts'].get(c, 0)})" for c in CLASSES])
    ax.set_ylabel("F1 on the real test split")
    ax.set_ylim(0, 1.15)
    ax.axvspan(CLASSES.index("PMY") - 0.45, CLASSES.index("PMY") + 0.45, color="orange", alpha=0.12)
    ax.set_title(
        f"{results['settings']['model']} {results['settings']['image_size']}px, "
        f"{results['settings']['epochs']} epochs, {len(results['settings']['seeds'])} seeds; "
        f"augmented: {', '.join(AUGMENTED_CLASSES)}"
    )
    ax.legend(loc="upper center", ncol=len(ARMS), fontsize=9)
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110, metadata={"Description": json.dumps(results["settings"])})
    plt.close(fig)


def markdown(results: dict) -> str:
    """The results as Markdown tables (mean +- std, [min..max])."""
    s = results["settings"]
    fmt = lambda st: f"{st['mean']:.3f} ± {st['std']:.3f} [{st['min']:.3f}..{st['max']:.3f}]"  # noqa: E731
    lines = [
        f"Model {s['model']} at {s['image_size']} px, {s['epochs']} epochs, batch {s['batch_size']}, weights none; "
        f"seeds {s['seeds']}; {s['per_class']} extra images per augmented class; data {s['pbc']}.",
        "Training images per class (proportional to the full release): "
        + ", ".join(f"{c} {n}" for c, n in results["train_counts"].items())
        + ".",
        f"Real test split: {results['test_n']} images.",
        "",
        "| arm | accuracy | macro-F1 | PMY F1 | " + " | ".join(f"{c} F1" for c in CLASSES if c != "PMY") + " |",
        "|---|---|---|---|" + "---|" * (len(CLASSES) - 1),
    ]
    for arm, r in results["arms"].items():
        sm = r["summary"]
        lines.append(
            f"| {arm} | {fmt(sm['accuracy'])} | {fmt(sm['macro_f1'])} | {fmt(sm['f1']['PMY'])} | "
            + " | ".join(f"{sm['f1'][c]['mean']:.3f}" for c in CLASSES if c != "PMY")
            + " |"
        )
    if "paper" in results:
        p = results["paper"]
        lines += [
            "",
            "Paper protocol (pooled, then split; bank from every image), one seed:",
            f"- its own test split ({p['own_test']['n']} images, synthetic included): accuracy "
            f"{p['own_test']['accuracy']:.3f}, macro-F1 {p['own_test']['macro_f1']:.3f}",
            f"- the real images of that test split ({p['real_part']['n']}): accuracy "
            f"{p['real_part']['accuracy']:.3f}, macro-F1 {p['real_part']['macro_f1']:.3f}",
            f"- augmented classes ({', '.join(AUGMENTED_CLASSES)}) only: accuracy on their synthetic test images "
            f"{p['augmented_synthetic']['accuracy']:.3f} (n {p['augmented_synthetic']['n']}) vs on their real test "
            f"images {p['augmented_real']['accuracy']:.3f} (n {p['augmented_real']['n']})",
            f"- inflation vs its real part: accuracy {p['own_test']['accuracy'] - p['real_part']['accuracy']:+.3f}, "
            f"macro-F1 {p['own_test']['macro_f1'] - p['real_part']['macro_f1']:+.3f}; vs the clean natural arm "
            f"(mean): accuracy {p['own_test']['accuracy'] - results['arms']['natural']['summary']['accuracy']['mean']:+.3f}"  # noqa: E501
            if "natural" in results["arms"]
            else "",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pbc", type=Path, default=SAMPLE / "PBC_dataset_normal_DIB")
    ap.add_argument("--out", type=Path, default=Path("bench-out/naturalize-gain"))
    ap.add_argument("--model", default="custom_cnn")
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument(
        "--per-class",
        type=int,
        default=150,
        help="extra images per augmented class (150 ~ the paper's 2,000 at the subsample's scale)",
    )
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--paper", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="seed of the split, subsample and composition")
    ap.add_argument(
        "--tag",
        default="",
        help="name of this training setting: runs go to OUT/runs-TAG/, results to "
        "OUT/results-TAG.* (data, banks and extra images are shared)",
    )
    a = ap.parse_args(argv)
    if not a.pbc.exists():
        ap.error(f"{a.pbc} not found; pass --pbc PBC_ROOT (or set NATURALIZE_SAMPLE)")

    from naturalize.build import layout_items
    from naturalize.compose.run import compose_class
    from naturalize.prepare import prepare
    from naturalize.records import read_records, write_records
    from naturalize.segment.run import segment

    out = a.out
    suffix = f"-{a.tag}" if a.tag else ""
    runs_dir = out / f"runs{suffix}"
    t_start = time.perf_counter()
    os.environ.setdefault("CLASSIFY_CACHE", str((out / "cache").resolve()))
    prepared = out / "prepared"
    if not (prepared / "records.csv").is_file():
        prepare(a.pbc, prepared, seed=a.seed, fractions=(0.8, 0.1, 0.1), workers=a.workers, overwrite=True)
    summary = json.loads((prepared / "summary.json").read_text())
    root = Path(summary["root"])
    records, keep_n = subsample_train(read_records(prepared / "records.csv"), a.seed)
    sub = out / "prepared-subsampled"
    if not (sub / "records.csv").is_file():
        write_records(sub / "records.csv", records)
        write_text(sub / "summary.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
        shutil.copy2(prepared / "dropped.csv", sub / "dropped.csv")
    train = [r for r in records if r.split == "train" and not r.excluded]
    val_test = [r for r in records if r.split in ("val", "test")]
    real_items = [(r.split, r.cls, root / r.path) for r in train + val_test]
    print("train (subsampled):", dict(sorted(Counter(r.cls for r in train).items())))

    arms = [x for x in a.arms.split(",") if x]
    extra: dict[str, list[tuple[str, str, Path]]] = {"real": []}
    if "natural" in arms:
        bank = out / "bank-train"
        syn = composed(out / "synthetic", a.per_class, a.seed)
        if syn is None:  # a finished composition is reused as is (the bank is only needed to make it)
            segment(sub, bank, backend="classical", split="train", workers=a.workers, progress=True, echo=print)
            syn = {
                c: compose_class(bank, c, a.per_class, out / "synthetic", seed=a.seed, workers=a.workers, progress=True)
                for c in AUGMENTED_CLASSES
            }
        extra["natural"] = [("train", c, p) for c in AUGMENTED_CLASSES for p in syn[c]]
    if "flip" in arms:
        extra["flip"] = [
            ("train", c, p)
            for c in AUGMENTED_CLASSES
            for p in flip_copies(
                sorted(root / r.path for r in train if r.cls == c),
                a.per_class,
                out / "flip" / c,
                a.seed + CLASSES.index(c),
            )
        ]
    seeds = list(range(a.seeds))
    results: dict = {
        "settings": {
            "pbc": str(a.pbc),
            "model": a.model,
            "image_size": a.image_size,
            "epochs": a.epochs,
            "batch_size": a.batch_size,
            "lr": a.lr,
            "seeds": seeds,
            "per_class": a.per_class,
            "split_seed": a.seed,
            "protocol": "clean",
        },
        "train_counts": {c: keep_n.get(c, 0) for c in CLASSES},
        "test_n": sum(1 for r in records if r.split == "test"),
        "arms": {},
    }
    for arm in arms:
        ds = out / "datasets" / arm
        lay_out(ds, real_items + extra[arm])
        per_seed = []
        for seed in seeds:
            t0 = time.perf_counter()
            per_seed.append(train_eval(ds, runs_dir / f"{arm}-seed{seed}", a, seed))
            print(
                f"{arm} seed {seed}: accuracy {per_seed[-1]['accuracy']:.3f} macro-F1 {per_seed[-1]['macro_f1']:.3f} "
                f"PMY F1 {per_seed[-1]['f1'].get('PMY', 0):.3f} ({time.perf_counter() - t0:.0f}s)"
            )
        results["arms"][arm] = {"per_seed": per_seed, "summary": summarize(per_seed)}

    if a.paper:
        # paper protocol: bank from every (subsampled) image, real + synthetic pooled, then split 80/10/10
        bank_all = out / "bank-all"
        pred = runs_dir / "paper-seed0" / "eval" / "test" / "predictions.csv"
        if not pred.is_file():
            pooled = [replace(r, split="") for r in train + val_test]
            syn = composed(out / "synthetic-paper", a.per_class, a.seed)
            if syn is None:
                segment(sub, bank_all, backend="classical", workers=a.workers, progress=True, echo=print)
                syn = {
                    c: compose_class(
                        bank_all, c, a.per_class, out / "synthetic-paper", seed=a.seed, workers=a.workers, progress=True
                    )
                    for c in AUGMENTED_CLASSES
                }
            items = layout_items(pooled, root, syn, "paper", out / "synthetic-paper", a.seed, (0.8, 0.1, 0.1))
            ds = out / "datasets" / "paper"
            lay_out(ds, [(i.split, i.cls, i.src) for i in items])
            train_eval(ds, runs_dir / "paper-seed0", a, 0)
        syn_name = lambda p: "_syn_" in Path(p).name  # noqa: E731
        aug = lambda p: Path(p).parent.name in AUGMENTED_CLASSES  # noqa: E731
        results["paper"] = {
            "own_test": scores_from_predictions(pred),
            "real_part": scores_from_predictions(pred, lambda p: not syn_name(p)),
            # same classes on both sides: the synthetic test images exist only for these
            "augmented_real": scores_from_predictions(pred, lambda p: aug(p) and not syn_name(p)),
            "augmented_synthetic": scores_from_predictions(pred, lambda p: aug(p) and syn_name(p)),
        }
    results["seconds"] = time.perf_counter() - t_start
    files = [out / f"results{suffix}.json", out / f"results{suffix}.md", out / f"f1_per_class{suffix}.png"]
    write_json(files[0], results)
    write_text(files[1], markdown(results))
    plot(results, files[2])
    print(markdown(results))
    print("wrote " + ", ".join(map(str, files)))
    return results


if __name__ == "__main__":
    main()
