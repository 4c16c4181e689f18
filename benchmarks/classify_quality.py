"""Benchmark: real classification quality on the shared PBC sample's 11 classes (the baseline to beat).

Builds a stratified 80/10/10 split tree of the sample with `naturalize prepare --materialize`
(file-name prefix = class; IG_/NEUTROPHIL_ images and non-images dropped) in a work directory
outside the repo, trains a model from scratch with `classify train`, and prints the test report and
macro-F1 with the exact commands that produced them.

  python benchmarks/classify_quality.py --work /tmp/classify-quality --model custom_cnn --image-size 128 --epochs 15
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from naturalize.testing import sample_home

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def sh(cmd: list[str]) -> None:
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="work directory (outside the repo)")
    ap.add_argument("--sample", type=Path, default=sample_home())
    ap.add_argument("--model", default="custom_cnn")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    work = args.work.resolve()
    if work.is_relative_to(REPO):
        sys.exit("--work must be outside the repository (nothing derived from the real data goes into it)")
    data = work / "pbc11"
    if not (data / "train").is_dir():
        sh(
            [
                str(BIN / "naturalize"),
                "prepare",
                str(args.sample / "PBC_dataset_normal_DIB"),
                "--out",
                str(data),
                "--materialize",
                "--seed",
                str(args.seed),
            ]
        )
    run = work / f"{args.model}_{args.image_size}px_{args.epochs}ep_seed{args.seed}"
    uptime = os.getloadavg()
    t = time.time()
    sh(
        [
            str(BIN / "classify"),
            "train",
            "--dataset",
            str(data),
            "--model",
            args.model,
            "--weights",
            "none",
            "--image-size",
            str(args.image_size),
            "--epochs",
            str(args.epochs),
            "--batch-size",
            str(args.batch_size),
            "--lr",
            str(args.lr),
            "--seed",
            str(args.seed),
            "--out",
            str(run),
        ]
    )
    minutes = (time.time() - t) / 60
    rep = json.loads((run / "eval" / "test" / "report.json").read_text())
    print((run / "eval" / "test" / "report.txt").read_text())
    summary = {
        "model": args.model,
        "image_size": args.image_size,
        "epochs": args.epochs,
        "run": str(run),
        "test_accuracy": rep["accuracy"],
        "test_macro_f1": rep["report"]["macro avg"]["f1-score"],
        "minutes": round(minutes, 1),
        "load_at_start": uptime,
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
