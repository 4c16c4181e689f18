"""Predict the class of some images with a trained run and show where the model looked (Score-CAM).

    python examples/explain_prediction.py --run out/build-and-train/run IMAGE [IMAGE ...] --out out/explain

Prints the predicted class and its probability per image and writes one PNG per image
(image | Score-CAM overlay) into OUT.
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="a run folder written by `classify train`")
    ap.add_argument("images", nargs="+", type=Path, help="image files or folders")
    ap.add_argument("--max-channels", type=int, default=64, help="Score-CAM feature maps to score (fewer = faster)")
    ap.add_argument("--out", type=Path, default=Path("out/explain"))
    a = ap.parse_args(argv)

    from classify.predict import predict
    from classify.scorecam import explain

    # predicted class and probabilities: CSV text with columns path, pred, prob, prob_<CLASS>...
    rows = list(csv.DictReader(io.StringIO(predict(a.run, a.images, progress=False))))
    for r in rows:
        print(f"{r['path']}: {r['pred']} ({float(r['prob']):.2f})")
    # Score-CAM: which parts of the image drive the predicted class
    pngs = explain(a.run, a.images, a.out, max_channels=a.max_channels, progress=False)
    print(f"Score-CAM maps: {', '.join(str(p) for p in pngs)}")


if __name__ == "__main__":
    main()
