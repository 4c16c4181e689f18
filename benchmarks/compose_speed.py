"""Speed of `naturalize compose` against a plain PIL implementation of the paper's Algorithm 1.

    python benchmarks/compose_speed.py [--sample DIR] [--n 10000] [--baseline-n 1000] [--workers 2]
        [--sprites 10000] [--scene paper|transplant] [--out bench-out/compose-speed] [--keep-old]

1. A sprite bank of >= --sprites sprites is cut from the sample with the OI-PBC boxes (naturalize/testing/boxbank.py;
   built once, kept in OUT/bank).
2. Naturalize: `naturalize compose --class PMY --n N --workers 2` (360x363 JPEG quality 75 4:4:4 as the
   PBC files, 8 RBC + 1 WBC + 0..2 platelets, feathering and stain matching on) as a subprocess: images/s over the
   whole command
   (start-up, bank loading and the final manifest/COCO files included) and in the steady state (first to
   last image written); start-up (to the first image) and final (last image to the end: manifest and COCO
   files) seconds; CPU seconds of all its processes and the rate two idle cores would give from
   them. Peak memory = the largest sum of PSS over the command's processes, sampled every 0.1 s in a
   second, untimed run of the same command (sampling costs CPU).
3. Algorithm 1 (benchmarks/naive_compose.py), single process, in this same run: images/s.
Prints one JSON object (also OUT/compose_speed.json), draws OUT/compose_speed.png (rates) and
OUT/examples.jpg (Naturalize images on top, Algorithm 1 below).
Targets: >= 1,000 images/s steady (>= 800/s with start-up), >= 5x Algorithm 1, peak memory < 2 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from naturalize.testing import machine, sample_home

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


def build_bank(sample: Path, out: Path, sprites: int) -> Path:
    """A box-cut bank of the sample's images, classes in turn, until it holds `sprites` sprites."""
    from naturalize.bank import Bank
    from naturalize.testing.boxbank import make_box_bank, pick_images

    if (out / "bank.json").is_file() and len(Bank.open(out).sprites) >= sprites:
        return out
    release, boxes = sample / "PBC_dataset_normal_DIB", sample / "oi-pbc-boxes"
    per = pick_images(
        release, boxes, {c: 400 for c in ("PMY", "BNE", "SNE", "MY", "MMY", "LY", "EO", "BA", "MO", "ERB")}
    )
    by_class: dict[str, list[Path]] = {}
    for p in per:
        by_class.setdefault(p.name.split("_")[0], []).append(p)
    order = [p for group in zip(*by_class.values()) for p in group]
    chosen = order[: max(10, sprites // 14)]
    while True:
        make_box_bank(release, boxes, chosen, out)
        n = len(Bank.open(out).sprites)
        if n >= sprites or len(chosen) == len(order):
            return out
        chosen = order[: len(chosen) + max(10, (sprites - n) // 12)]


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def tree_pss_mb(pid: int) -> float:
    """PSS (MB) of a process and all its descendants: shared pages counted once."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        stack += _children(p)
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            pass
    return total / 1024


def set_aside(path: Path) -> None:
    """Move an earlier run's output into OUT/.trash, deleted only after every measurement: on this machine's
    ext4 (no journal) a file created in a block group holding inodes deleted in the last 1-6 minutes costs
    0.5-1 ms of system time (find_inode_bit skips each `recently_deleted` inode), which deleting 10,000
    images just before a run would add to it (measured: 20-40 us per file otherwise). So a benchmark
    started within minutes of the previous one's clean-up can still be slowed: the JSON gives the minutes
    since that clean-up and the command's system CPU seconds (about 1.5 s when unaffected)."""
    if path.exists():
        trash = path.parent / ".trash"
        trash.mkdir(exist_ok=True)
        path.rename(trash / f"{path.name}-{time.time_ns()}")


#: which scene the runs compose (--scene)
SCENE = ["transplant"]


def _compose_cmd(bank: Path, out: Path, n: int, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "naturalize.cli",
        "compose",
        "--class",
        "PMY",
        "--n",
        str(n),
        "--bank",
        str(bank),
        "--out",
        str(out),
        "--workers",
        str(workers),
        "--overwrite",
        "--scene",
        SCENE[0],
    ]


def run_compose(bank: Path, out: Path, n: int, workers: int) -> dict:
    """The timed run: nothing else runs beside it."""
    set_aside(out)  # a fresh run, not a resume
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    proc = subprocess.run(_compose_cmd(bank, out, n, workers), capture_output=True)
    wall = time.time() - t0
    if proc.returncode:
        raise SystemExit(f"compose failed: {proc.stderr.decode()[-2000:]}")
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    sys_s = ru1.ru_stime - ru0.ru_stime
    mtimes = sorted(p.stat().st_mtime for p in (out / "PMY").glob("*.jpg"))
    assert len(mtimes) == n, f"{len(mtimes)} images written, expected {n}"
    steady = (n - 1) / max(1e-9, mtimes[-1] - mtimes[0])
    return {
        "images": n,
        "wall_s": round(wall, 2),
        "images_per_s": round(n / wall, 1),
        "startup_s": round(mtimes[0] - t0, 2),
        "steady_images_per_s": round(steady, 1),
        "final_s": round(t0 + wall - mtimes[-1], 2),
        "cpu_s": round(cpu, 2),
        "system_cpu_s": round(sys_s, 2),
        "idle_2core_images_per_s": round(n / (cpu / 2), 1),
    }


def peak_memory(bank: Path, out: Path, n: int, workers: int) -> float:
    """Peak PSS (MB) of the same command, run again while sampled every 0.1 s (a sample reads every
    process's smaps_rollup, tens of ms: too costly to run beside the timed run)."""
    set_aside(out)
    proc = subprocess.Popen(_compose_cmd(bank, out, n, workers), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, tree_pss_mb(proc.pid))
        time.sleep(0.1)
    if proc.returncode:
        raise SystemExit(f"compose failed: {proc.stderr.read().decode()[-2000:]}")
    return round(peak, 1)


def run_naive(bank: Path, out: Path, n: int) -> dict:
    from naive_compose import naive_compose

    from naturalize.bank import Bank

    set_aside(out)
    c0, t0 = time.process_time(), time.perf_counter()
    naive_compose(Bank.open(bank), "PMY", n, out)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "images": n,
        "wall_s": round(wall, 2),
        "images_per_s": round(n / wall, 1),
        "cpu_s": round(cpu, 2),
        "idle_1core_images_per_s": round(n / cpu, 1),
    }


def draw(result: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ours, naive = result["naturalize"], result["algorithm1"]
    names = ["Naturalize\nsteady", "Naturalize\nwith start-up", "Algorithm 1\n(PIL, 1 process)"]
    vals = [ours["steady_images_per_s"], ours["images_per_s"], naive["images_per_s"]]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    bars = ax.bar(names, vals, color=["#4477aa", "#66aadd", "#bbbbbb"])
    ax.bar_label(bars, [f"{v:.0f}/s" for v in vals])
    ax.axhline(1000, ls="--", c="k", lw=0.8)
    ax.set_ylabel("images / s")
    ax.set_title(f"compose speed, {result['machine']}, load {result['load_before']:.1f}")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def examples(ours: Path, naive: Path, out: Path) -> None:
    import cv2
    import numpy as np

    top = [cv2.imread(str(ours / "PMY" / f"PMY_syn_0_{i}.jpg")) for i in range(5)]
    bottom = [cv2.imread(str(naive / f"PMY_naive_{i}.jpg")) for i in range(5)]
    cv2.imwrite(str(out), np.vstack([np.hstack(top), np.hstack(bottom)]), [cv2.IMWRITE_JPEG_QUALITY, 90])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sample", type=Path, default=sample_home())
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--baseline-n", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--sprites", type=int, default=10000)
    ap.add_argument("--out", type=Path, default=REPO / "bench-out" / "compose-speed")
    ap.add_argument("--scene", default="transplant", help="compose --scene of the timed runs")
    ap.add_argument(
        "--keep-old",
        action="store_true",
        help="leave earlier runs' outputs in OUT/.trash (delete it yourself later): for runs back to back",
    )
    a = ap.parse_args()
    SCENE[0] = a.scene
    a.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    bank = build_bank(a.sample, a.out / "bank", a.sprites)
    from naturalize.bank import Bank

    b = Bank.open(bank)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": machine(),
        "bank": {
            "sprites": len(b.sprites),
            "backgrounds": len(b.backgrounds),
            "build_s": round(time.perf_counter() - t0, 1),
        },
        "load_before": os.getloadavg()[0],
        "scene": a.scene,
    }
    emptied = a.out / ".trash-emptied"
    if emptied.is_file():
        result["minutes_since_last_cleanup"] = round((time.time() - float(emptied.read_text())) / 60, 1)
    if a.scene == "transplant":  # donors are inpainted once per bank (cached in it): part of making the bank
        from naturalize.compose.params import ComposeParams
        from naturalize.compose.scenes import transplant_library

        t1 = time.perf_counter()
        transplant_library(b, "PMY", 0, ComposeParams(scene="transplant"), threads=a.workers)
        result["bank"]["donor_cache_s"] = round(time.perf_counter() - t1, 1)
    if a.scene == "matched":  # plates and small cells are cached once per bank (seed-independent): the same
        from naturalize.compose.params import ComposeParams
        from naturalize.compose.scenes import matched_library

        t1 = time.perf_counter()
        matched_library(b, "PMY", 0, ComposeParams(scene="matched"), threads=a.workers)
        result["bank"]["source_cache_s"] = round(time.perf_counter() - t1, 1)
    result["naturalize"] = run_compose(bank, a.out / "ours", a.n, a.workers)
    result["load_after_naturalize"] = os.getloadavg()[0]
    result["algorithm1"] = run_naive(bank, a.out / "naive", a.baseline_n)
    result["load_after"] = os.getloadavg()[0]
    result["naturalize"]["peak_pss_mb"] = peak_memory(bank, a.out / "memory-run", a.n, a.workers)
    ours, naive = result["naturalize"], result["algorithm1"]
    result["speedup_steady"] = round(ours["steady_images_per_s"] / naive["images_per_s"], 1)
    result["speedup_with_startup"] = round(ours["images_per_s"] / naive["images_per_s"], 1)
    result["targets"] = {
        "steady>=1000/s": ours["steady_images_per_s"] >= 1000,
        "with_startup>=800/s": ours["images_per_s"] >= 800,
        "speedup>=5x": result["speedup_with_startup"] >= 5,
        "peak<2GB": ours["peak_pss_mb"] < 2048,
    }
    (a.out / "compose_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    draw(result, a.out / "compose_speed.png")
    examples(a.out / "ours", a.out / "naive", a.out / "examples.jpg")
    if not a.keep_old:
        shutil.rmtree(a.out / ".trash", ignore_errors=True)
        (a.out / ".trash-emptied").write_text(f"{time.time()}\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
