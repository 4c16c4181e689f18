"""Benchmark: how fast `naturalize prepare` indexes a PBC tree (target: full release, 17,092 files, < 30 s).

Times the scan of the shared sample, then of a release-sized tree (17,092 files) made of links to the
sample's images, on this machine. Usage:

    python benchmarks/prepare_speed.py [--sample ../shared/pbc-sample] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from naturalize.records import scan
from naturalize.testing import sample_home

RELEASE_FILES = 17_092


def timed_scan(root: Path, workers: int) -> tuple[float, int]:
    t = time.perf_counter()
    result = scan(root, workers=workers, progress=False)
    return time.perf_counter() - t, len(result.records) + len(result.dropped)


def release_sized_tree(sample: Path, dest: Path, n: int) -> Path:
    """Lay out n files in the release's folders, each a symlink to a sample image (cycling)."""
    files = sorted((sample / "PBC_dataset_normal_DIB").glob("*/*.jpg"))
    root = dest / "PBC_dataset_normal_DIB"
    for i in range(n):
        src = files[i % len(files)]
        dst = root / src.parent.name / f"{src.stem}_{i // len(files)}.jpg"
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(src, dst)
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", type=Path, default=sample_home())
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    if not (args.sample / "PBC_dataset_normal_DIB").is_dir():
        raise SystemExit(f"PBC sample not found at {args.sample}; set NATURALIZE_SAMPLE")
    timed_scan(args.sample, args.workers)  # warm the page cache, as a second run on a real machine would be
    secs, n = timed_scan(args.sample, args.workers)
    print(
        f"sample: {n} files in {secs:.2f} s = {n / secs:.0f} files/s "
        f"-> full release ({RELEASE_FILES} files) ~ {RELEASE_FILES / (n / secs):.1f} s"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tree = release_sized_tree(args.sample, Path(tmp), RELEASE_FILES)
        secs, n = timed_scan(tree, args.workers)
        print(f"release-sized tree: {n} files in {secs:.2f} s = {n / secs:.0f} files/s (target < 30 s)")


if __name__ == "__main__":
    main()
