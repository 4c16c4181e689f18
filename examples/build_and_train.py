"""Build a paper dataset (default 2k-pbc, clean protocol) and train a classifier on it, in Python.

    python examples/build_and_train.py --pbc PBC_ROOT                       # the paper's 2k-pbc
    python examples/build_and_train.py --pbc PBC_ROOT --max-real 20 --recipe custom --classes PMY,MY \
        --per-class 10 --model custom_cnn --image-size 64 --epochs 2 --out out/small   # a small, quick run

Writes OUT/dataset/ (train/val/test/<CLASS>/, dataset.json) and OUT/run/ (model, curves.png,
eval/test/report.txt and confusion.png) and prints the test scores (real test images only).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from naturalize.build import build, format_table
from naturalize.classes import parse_classes


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pbc", type=Path, required=True, help="a PBC download (or the demo's drawn-pbc/)")
    ap.add_argument(
        "--recipe", default="2k-pbc", help="pbc11, pbc11-curated, 419-pmy, 1k-pbc, 2k-pbc, 1k-class-pbc, custom"
    )
    ap.add_argument("--classes", default="", help="classes that get synthetic images, e.g. PMY,MY (custom recipe)")
    ap.add_argument("--protocol", default="clean", choices=("clean", "paper"))
    ap.add_argument("--max-real", type=int, default=None, help="at most N real images per class (quick runs)")
    ap.add_argument("--per-class", type=int, default=None, help="synthetic images per augmented class")
    ap.add_argument("--backend", default="classical", help="segmentation backend: classical, sam or auto")
    ap.add_argument("--model", default="efficientnetv2b0")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("out/build-and-train"))
    a = ap.parse_args(argv)

    # 1. the dataset: prepare -> segment -> compose -> train/val/test tree (val/test real only when clean)
    meta = build(
        a.recipe,
        a.pbc,
        a.out / "dataset",
        protocol=a.protocol,
        seed=a.seed,
        backend=a.backend,
        classes=parse_classes(a.classes),
        per_class=a.per_class,
        per_class_cap=a.max_real,
        workers=a.workers,
        work=a.out / "work",
    )
    print(format_table(meta))

    # 2. train (weights none: nothing is downloaded) and 3. evaluate on the real test split
    from classify.evaluate import evaluate_run
    from classify.train import train

    run = train(
        a.out / "dataset",
        a.model,
        a.out / "run",
        weights="none",
        epochs=a.epochs,
        batch_size=a.batch_size,
        image_size=a.image_size,
        seed=a.seed,
        evaluate=False,
        workers=a.workers,
    )
    result = evaluate_run(run, "test")
    print(f"test accuracy {result['accuracy']:.4f}  macro-F1 {result['report']['macro avg']['f1-score']:.4f}")
    print(f"run: {run}  report: {run / 'eval' / 'test' / 'report.txt'}")


if __name__ == "__main__":
    main()
