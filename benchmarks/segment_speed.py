"""Speed of `naturalize segment`.

    python benchmarks/segment_speed.py [--sample DIR] [--workers 2] [--limit N] [--sam-images 1] [--skip-sam]
        [--device cpu|cuda] [--json OUT.json]

1. classical: the whole command, end to end (scanning the tree, segmenting, writing the bank),
   `naturalize segment SAMPLE --backend classical --workers 2`, in images/s (wall clock), plus the CPU
   seconds it used (all processes) and the rate two idle cores would allow from that, since a shared
   machine's wall clock depends on its other load. Target: >= 40 images/s on a 2-core machine.
2. sam: a vit_b with random weights (the speed does not depend on the weights), saved as a checkpoint and
   loaded the way --checkpoint does; seconds per image for the image encoding and for the whole
   segmentation (encoding + batched prompts + masks -> cells + background), default settings.

Prints one JSON object (also written to --json) with the figures, the machine's load and the settings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from naturalize.testing import machine, sample_home

REPO = Path(__file__).resolve().parents[1]


def classical(sample: Path, workers: int, limit: int | None) -> dict:
    """Run the command once into a fresh bank; images/s over the whole run."""
    from naturalize.bank import Bank

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bank"
        cmd = [
            sys.executable,
            "-m",
            "naturalize.cli",
            "segment",
            str(sample),
            "--out",
            str(out),
            "--backend",
            "classical",
            "--workers",
            str(workers),
            "--no-progress",
        ]
        if limit:
            cmd += ["--limit", str(limit)]
        load = os.getloadavg()[0]
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        wall = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        bank = Bank.open(out)
        n = len(bank.curation)
        return {
            "command": " ".join(["naturalize"] + cmd[3:]),
            "images": n,
            "seconds": round(wall, 2),
            "images_per_s": round(n / wall, 2),
            "cpu_seconds": round(cpu, 2),
            "cpu_ms_per_image": round(1000 * cpu / n, 1),
            # what two otherwise idle cores would give if the run kept both busy (an upper bound)
            "images_per_s_two_free_cores": round(2 * n / cpu, 2),
            "sprites": len(bank.sprites),
            "load_before": round(load, 2),
            "load_after": round(os.getloadavg()[0], 2),
        }


def sam(sample: Path, n_images: int, device: str) -> dict:
    """Seconds per image for SAM vit_b (random weights) on `device`."""
    import torch
    from segment_anything import sam_model_registry

    from naturalize.segment.run import read_rgb
    from naturalize.segment.sam import SamSegmenter

    images = sorted((sample / "PBC_dataset_normal_DIB" / "neutrophil").glob("SNE_*.jpg"))[:n_images]
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "random_vit_b.pth"
        torch.manual_seed(0)
        torch.save(sam_model_registry["vit_b"]().state_dict(), ckpt)
        t0 = time.perf_counter()
        seg = SamSegmenter.load(ckpt, "vit_b", device)
        load_s = time.perf_counter() - t0
    rgbs = [read_rgb(str(p)) for p in images]
    enc, total, cpu = [], [], []
    for rgb in rgbs:
        t0 = time.perf_counter()
        seg.predictor.set_image(rgb)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        enc.append(time.perf_counter() - t0)
        t0, c0 = time.perf_counter(), time.process_time()
        seg(rgb)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        total.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {
        "model": "vit_b (random weights)",
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "images": len(rgbs),
        "load_s": round(load_s, 2),
        "encode_s_per_image": round(sum(enc) / len(enc), 2),
        "segment_s_per_image": round(sum(total) / len(total), 2),
        "segment_cpu_s_per_image": round(sum(cpu) / len(cpu), 2),
        "points_per_side": seg.params.points_per_side,
        "load_avg": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sample", type=Path, default=sample_home())
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="only the first N images (default: all)")
    ap.add_argument("--sam-images", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip-sam", action="store_true")
    ap.add_argument("--skip-classical", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if not (args.sample / "PBC_dataset_normal_DIB").is_dir():
        sys.exit(
            f"error: no PBC sample at {args.sample}; pass --sample DIR (the folder holding PBC_dataset_normal_DIB/)"
        )
    result = {"machine": f"{platform.node()} {machine()}", "date": time.strftime("%Y-%m-%d %H:%M")}
    if not args.skip_classical:
        result["classical"] = classical(args.sample, args.workers, args.limit)
    if not args.skip_sam:
        result["sam"] = sam(args.sample, args.sam_images, args.device)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
