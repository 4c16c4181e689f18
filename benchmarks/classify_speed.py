"""Benchmark: classify throughput on this machine, per model and image size.

Measures, on real PBC sample images:
  decode   one-time decode + resize into the cache (images/s)
  loader   batches from the in-memory cache with flip/rot90 augmentation (images/s), as training feeds them
  train    the optimizer step alone (batches already in memory), images/s
  infer    the forward pass, images/s
and checks loader >= 5x train. Prints a Markdown table (and writes JSON with --json).

  python benchmarks/classify_speed.py --models custom_cnn,efficientnetv2b0 --sizes 224,128
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from naturalize.testing import sample_home  # noqa: E402


def sample_paths(n: int) -> list[Path]:
    root = sample_home() / "PBC_dataset_normal_DIB"
    paths = sorted(p for p in root.rglob("*.jpg") if not p.name.startswith("."))
    if not paths:
        sys.exit(f"no sample images under {root}; set NATURALIZE_SAMPLE")
    step = max(1, len(paths) // n)
    return paths[::step][:n]


def rate(n_images: int, seconds: float) -> float:
    return n_images / max(seconds, 1e-9)


def bench(model_name: str, size: int, paths: list[Path], batch_size: int, steps: int) -> dict:
    import keras
    import numpy as np

    from classify.batches import make_batches
    from classify.images import cached_array, decode_all
    from classify.models import create_model

    t = time.perf_counter()
    decode_all(paths, size, progress=False)  # what building the cache costs, once per dataset and size
    decode = rate(len(paths), time.perf_counter() - t)
    x = cached_array(paths, size, progress=False)
    y = (np.arange(len(paths)) % 11).astype("int32")
    batches = make_batches(x, y, batch_size, augment_data=True, shuffle=True, seed=0)
    t = time.perf_counter()
    n = 0
    for epoch in range(2):
        batches.set_epoch(epoch)
        for i in range(len(batches)):
            n += len(batches[i][0])
    loader = rate(n, time.perf_counter() - t)

    keras.utils.set_random_seed(0)
    model = create_model(model_name, 11, "none", "finetune", size)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    held = [batches[i % len(batches)] for i in range(steps + 2)]
    for xb, yb in held[:2]:  # warm-up (graph tracing)
        model.train_on_batch(xb, yb)
    t = time.perf_counter()
    for xb, yb in held[2:]:
        model.train_on_batch(xb, yb)
    train = rate(steps * batch_size, time.perf_counter() - t)
    model.predict_on_batch(held[0][0])
    t = time.perf_counter()
    for xb, _ in held[2:]:
        model.predict_on_batch(xb)
    infer = rate(steps * batch_size, time.perf_counter() - t)
    return {
        "model": model_name,
        "size": size,
        "batch_size": batch_size,
        "decode_img_s": decode,
        "loader_img_s": loader,
        "train_img_s": train,
        "infer_img_s": infer,
        "loader_over_train": loader / train,
        "backend": keras.backend.backend(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="custom_cnn,efficientnetv2b0")
    ap.add_argument("--sizes", default="224,128")
    ap.add_argument("--images", type=int, default=256, help="real sample images decoded for the loader test")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=4, help="timed optimizer steps per model and size")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    own_cache = None
    if not os.environ.get("CLASSIFY_CACHE"):
        own_cache = tempfile.TemporaryDirectory(prefix="classify-bench-cache-")
        os.environ["CLASSIFY_CACHE"] = own_cache.name
    paths = sample_paths(args.images)
    rows = []
    for size in map(int, args.sizes.split(",")):
        for name in args.models.split(","):
            rows.append(bench(name, size, paths, args.batch_size, args.steps))
            r = rows[-1]
            print(
                f"{name} @{size}: decode {r['decode_img_s']:.0f}, loader {r['loader_img_s']:.0f}, "
                f"train {r['train_img_s']:.1f}, infer {r['infer_img_s']:.1f} img/s",
                file=sys.stderr,
                flush=True,
            )
    print(
        f"\nbackend {rows[0]['backend']}, batch {args.batch_size}, {args.images} real PBC images, "
        f"load {os.getloadavg()}\n"
    )
    print("| model | size | decode img/s (once) | loader img/s | train img/s | infer img/s | loader / train |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ok = "ok" if r["loader_over_train"] >= 5 else "TOO SLOW"
        print(
            f"| {r['model']} | {r['size']} | {r['decode_img_s']:.0f} | {r['loader_img_s']:.0f} | "
            f"{r['train_img_s']:.1f} | {r['infer_img_s']:.1f} | {r['loader_over_train']:.0f}x {ok} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    if own_cache is not None:
        own_cache.cleanup()


if __name__ == "__main__":
    main()
