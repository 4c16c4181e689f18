"""GPU readiness check: the figures a short GPU loan should bring back, in one JSON file.

Measures, within about 8 minutes on one GPU:
  sam    SAM vit_b and vit_h (random weights: speed does not depend on them) segmenting PBC crops the way
         `naturalize segment --backend sam` does (one encoding + the prompt grid per image), images/s
  train  EfficientNetV2-B0 and DenseNet-169 optimizer steps at 224 px with mixed precision (mixed_float16),
         images/s, on both Keras backends; each backend runs in its own subprocess (KERAS_BACKEND is read
         once per process)

Every stage is timed against one budget (--budget-s); a stage that would not fit is recorded as skipped, and
the JSON is rewritten after every stage, so an interrupted run still leaves what it measured.

  python benchmarks/gpu_check.py --out gpu_check.json              # on the GPU machine
  python benchmarks/gpu_check.py --dry-run --out /tmp/gpu.json     # CPU, tiny sizes, seconds (the tests run it)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from naturalize.testing import sample_home  # noqa: E402

MODELS = ("efficientnetv2b0", "densenet169")
BACKENDS = ("tensorflow", "torch")
SAM_TYPES = ("vit_b", "vit_h")


def pbc_crops(n: int, dry_run: bool) -> list:
    """n RGB arrays: real PBC sample crops when the sample is there, else drawn stand-ins (same size)."""
    import numpy as np

    from naturalize.drawn import draw_image
    from naturalize.segment.run import read_rgb

    root = sample_home() / "PBC_dataset_normal_DIB"
    paths = sorted(root.rglob("*.jpg"))[::97][:n] if root.is_dir() else []
    if len(paths) == n:
        return [read_rgb(p) for p in paths]
    rng = np.random.default_rng(0)
    return [draw_image(("SNE", "PMY", "LY", "EO")[i % 4], rng) for i in range(n)]


# ---------------------------------------------------------------- SAM (this process, PyTorch)


def sam_model(model_type: str, dry_run: bool, device: str):
    """A SAM model with random weights on `device`; the dry run uses a tiny encoder under the same name."""
    import torch
    from segment_anything import sam_model_registry
    from segment_anything.build_sam import _build_sam

    torch.manual_seed(0)
    model = (
        _build_sam(encoder_embed_dim=32, encoder_depth=1, encoder_num_heads=1, encoder_global_attn_indexes=[0])
        if dry_run
        else sam_model_registry[model_type]()
    )
    return model.to(device).eval()


def bench_sam(model_type: str, images: list, dry_run: bool, warmup: int) -> dict:
    """Images/s of SamSegmenter (the `segment --backend sam` path) over `images`, after `warmup` images."""
    import torch

    from naturalize.segment.sam import SamParams, SamSegmenter

    device = "cuda" if torch.cuda.is_available() else "cpu"
    t0 = time.perf_counter()
    params = SamParams(points_per_side=2) if dry_run else SamParams()
    seg = SamSegmenter(sam_model(model_type, dry_run, device), params)
    load_s = time.perf_counter() - t0
    for rgb in images[:warmup]:
        seg(rgb)
    timed = images[warmup:]
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for rgb in timed:
        seg(rgb)
    sync()
    seconds = time.perf_counter() - t0
    return {
        "model_type": model_type,
        "device": device,
        "points_per_side": params.points_per_side,
        "image_size": list(images[0].shape[:2]),
        "images": len(timed),
        "seconds": round(seconds, 3),
        "images_per_s": round(len(timed) / seconds, 3),
        "load_s": round(load_s, 2),
        "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20) if device == "cuda" else None,
        "weights": "tiny random stand-in (dry run)" if dry_run else "random",
    }


# ---------------------------------------------------------------- Keras training (one subprocess per backend)


def keras_worker(
    models: list[str], size: int, batch: int, warmup: int, steps: int, policy: str, jit: str, eager: bool = False
) -> dict:
    """In a process whose KERAS_BACKEND is set: train-step images/s per model on random images. Prints one JSON
    line per finished model as it goes (so a timeout keeps what was measured) and returns the whole result."""
    import keras
    import numpy as np

    from classify.models import create_model

    keras.mixed_precision.set_global_policy(policy)
    backend = keras.backend.backend()
    out: dict = {
        "backend": backend,
        "keras": keras.__version__,
        "policy": policy,
        "jit_compile": jit,
        "eager": eager,
        "device": _device(backend),
        "models": {},
    }
    print(json.dumps({k: v for k, v in out.items() if k != "models"}), flush=True)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch, size, size, 3)).astype("float32")
    y = rng.integers(0, 11, batch)
    for name in models:
        keras.utils.set_random_seed(0)
        t0 = time.perf_counter()
        model = create_model(name, 11, "none", "finetune", size)
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss="sparse_categorical_crossentropy",
            jit_compile=jit if jit == "auto" else jit == "true",
            run_eagerly=eager,
        )
        for _ in range(warmup):  # the first steps compile / autotune
            model.train_on_batch(x, y)
        start_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(steps):
            loss = model.train_on_batch(x, y)  # returns host values: the step has finished
        seconds = time.perf_counter() - t0
        out["models"][name] = {
            "image_size": size,
            "batch": batch,
            "steps": steps,
            "seconds": round(seconds, 3),
            "images_per_s": round(steps * batch / seconds, 2),
            "warmup_s": round(start_s, 2),
            "loss": float(np.asarray(loss).ravel()[0]),
        }
        print(json.dumps({"model": name, **out["models"][name]}), flush=True)
    return out


def _device(backend: str) -> str:
    if backend == "torch":
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    import tensorflow as tf  # benchmark bookkeeping only: which device TensorFlow sees

    gpus = tf.config.list_physical_devices("GPU")
    return f"{len(gpus)} GPU(s)" if gpus else "cpu"


def bench_keras(backend: str, args: argparse.Namespace, timeout: float) -> dict:
    """Run keras_worker in a subprocess with KERAS_BACKEND=backend; its last stdout line is the JSON."""
    cmd = [
        sys.executable,
        __file__,
        "--keras-worker",
        "--size",
        str(args.size),
        "--batch",
        str(args.batch),
        "--warmup",
        str(args.warmup),
        "--steps",
        str(args.steps),
        "--policy",
        args.policy,
        "--jit",
        args.jit,
        *(["--eager"] if args.eager else []),
        "--models",
        ",".join(args.models),
    ]
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)  # keep carried packages
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": path}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired as e:  # keep the models that finished before the budget ran out
        partial = _worker_lines(e.stdout)
        return {**partial, "backend": backend, "error": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        return {
            **_worker_lines(done.stdout),
            "backend": backend,
            "error": (done.stderr.strip().splitlines() or ["failed"])[-1][:300],
        }
    return _worker_lines(done.stdout)


def _worker_lines(stdout: str | bytes | None) -> dict:
    """The worker's JSON lines (a header, then one per finished model) -> one result dict."""
    text = stdout.decode(errors="replace") if isinstance(stdout, bytes) else (stdout or "")
    result: dict = {"models": {}}
    for line in text.splitlines():
        if not line.startswith("{"):
            continue
        item = json.loads(line)
        if "model" in item:
            result["models"][item.pop("model")] = item
        elif "backend" in item:
            result.update(item)
    return result


# ---------------------------------------------------------------- driver


def _gpu_name() -> str:
    """The CUDA device PyTorch sees, with its torch version ('none' on a CPU machine)."""
    import torch

    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return f"{name} (torch {torch.__version__})"


def write(path: Path, result: dict) -> None:
    from naturalize.fsio import write_json

    write_json(path, result)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("bench-out/gpu_check.json"), help="JSON file to write")
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: checks the script in seconds")
    p.add_argument("--budget-s", type=float, default=480, help="stop starting stages after this many seconds")
    p.add_argument("--sam-images", type=int, default=None, help="timed images per SAM model (default 24, dry 1)")
    p.add_argument("--size", type=int, default=None, help="training image size (default 224, dry 32)")
    p.add_argument("--batch", type=int, default=None, help="training batch (default 64, dry 2)")
    p.add_argument("--warmup", type=int, default=None, help="untimed first steps (default 5, dry 1)")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 30, dry 1)")
    p.add_argument("--policy", default="mixed_float16", help="Keras dtype policy (mixed precision)")
    p.add_argument(
        "--jit",
        choices=("auto", "true", "false"),
        default=None,
        help="Keras jit_compile (default auto: XLA where the backend can; dry run false, it compiles slowly)",
    )
    p.add_argument(
        "--eager",
        action="store_true",
        help="Keras run_eagerly (the dry run's default: no graph tracing, which takes minutes on a CPU)",
    )
    p.add_argument("--models", type=lambda s: s.split(","), default=list(MODELS))
    p.add_argument("--keras-worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    dry = args.dry_run
    args.size = args.size or (32 if dry else 224)
    args.batch = args.batch or (2 if dry else 64)
    args.warmup = args.warmup if args.warmup is not None else (1 if dry else 5)
    args.steps = args.steps or (1 if dry else 30)
    args.jit = args.jit or ("false" if dry else "auto")
    args.eager = args.eager or dry
    if args.keras_worker:
        keras_worker(args.models, args.size, args.batch, args.warmup, args.steps, args.policy, args.jit, args.eager)
        return 0

    t_start = time.perf_counter()
    left = lambda: args.budget_s - (time.perf_counter() - t_start)  # noqa: E731
    sam_images = args.sam_images or (1 if dry else 24)
    result: dict = {
        "dry_run": dry,
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "machine": {
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "gpu": _gpu_name(),
        },
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "keras_worker")},
        "sam": {},
        "train": {},
    }
    result["settings"]["out"] = str(args.out)
    crops = pbc_crops(sam_images + 1, dry)
    for model_type in SAM_TYPES:
        if left() < (5 if dry else 60):
            result["sam"][model_type] = {"skipped": "time budget spent"}
            continue
        try:
            result["sam"][model_type] = bench_sam(model_type, crops, dry, warmup=1)
        except Exception as e:  # a missing package or an out-of-memory error must not lose the other figures
            result["sam"][model_type] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
        print(f"sam {model_type}: {result['sam'][model_type]}", flush=True)
        write(args.out, result)
    for backend in BACKENDS:
        if left() < (5 if dry else 60):
            result["train"][backend] = {"skipped": "time budget spent"}
            continue
        result["train"][backend] = bench_keras(backend, args, timeout=max(left(), 10))
        print(f"train {backend}: {result['train'][backend]}", flush=True)
        write(args.out, result)
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    write(args.out, result)
    print(f"wrote {args.out} ({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
