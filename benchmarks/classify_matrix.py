"""Check: every classify model x mode on this process's Keras backend, the user's path end to end.

For each cell (model, mode), in its own working folder:
  weights  a model of the registry with random weights; its backbone's weights (the whole model's, for the
           ensembles) saved to a local .weights.h5 file: the path ImageNet weights take (custom_cnn: --weights none)
  train    `classify train --epochs 1 --no-evaluate --weights FILE`, then `--epochs 2` again (a resume)
  check    last.keras against a model built afresh from FILE: in transfer mode every backbone variable equal
           (frozen), in finetune mode changed; history.csv has 2 rows; eval/test/report.json written
  explain  `classify explain` on 3 images: a Score-CAM PNG that is not blank
Cells run as separate processes, `--jobs` at a time; results go to OUT/matrix.json and a Markdown table
OUT/matrix.md, rewritten after every cell.

  KERAS_BACKEND=torch python benchmarks/classify_matrix.py TREE --out bench-out/matrix --jobs 4
  python benchmarks/classify_matrix.py TREE --cells densenet121:transfer,vgg19:finetune --image-size 64

TREE: a plain tree of class folders of real PBC images (classify splits it 80/10/10 itself).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def all_cells() -> list[str]:
    """Every valid model:mode of the registry (custom_cnn has no pretrained base, so no transfer)."""
    from classify.models import MODELS

    return [
        f"{m}:{mode}" for m in MODELS for mode in ("transfer", "finetune") if (m, mode) != ("custom_cnn", "transfer")
    ]


def cli(args: list[str], log: Path) -> tuple[int, float]:
    """Run `classify ARGS` as a user does (the CLI's main) -> (exit status, seconds); output appended to `log`."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    t = time.perf_counter()
    with open(log, "a") as f:
        f.write(f"$ classify {' '.join(args)}\n")
        f.flush()
        rc = subprocess.run(
            [sys.executable, "-c", "from classify.cli import main; main()", *args], stdout=f, stderr=f, env=env
        ).returncode
    return rc, time.perf_counter() - t


def make_weights(model: str, classes: int, size: int, path: Path) -> str:
    """Random weights saved where --weights PATH reads them -> the --weights value."""
    from classify.models import MODELS, backbone_of, create_model

    if model == "custom_cnn":
        return "none"
    built = create_model(model, classes, "none", "finetune", size)
    (built if MODELS[model].whole_weights else backbone_of(built)[0]).save_weights(path)
    return str(path)


def compare(run: Path, model: str, classes: int, size: int, weights: str, mode: str) -> dict:
    """last.keras's backbone variables against a fresh build from `weights`: how many are equal, and the total."""
    import numpy as np

    from classify.models import backbone_of, create_model
    from classify.runs import load_model

    def bases(m) -> list:  # the pretrained parts: an ensemble_average member's own backbone, not its head
        return [b for x in backbone_of(m) for b in (backbone_of(x) if x.name.startswith("member_") else [x])]

    trained = load_model(run / "last.keras")
    fresh = create_model(model, classes, weights, mode, size)
    pairs = [(a, b) for t, f in zip(bases(trained), bases(fresh)) for a, b in zip(t.weights, f.weights)]
    equal = sum(bool(np.array_equal(np.asarray(a.numpy()), np.asarray(b.numpy()))) for a, b in pairs)
    return {
        "params": int(trained.count_params()),
        "trainable": int(sum(int(np.prod(w.shape)) for w in trained.trainable_weights)),
        "backbone_equal": equal,
        "backbone_vars": len(pairs),
    }


def blank(png: Path) -> bool:
    import numpy as np
    from PIL import Image

    return float(np.asarray(Image.open(png).convert("L"), dtype=float).std()) < 1.0


def run_cell(cell: str, tree: Path, size: int, batch: int, work: Path) -> dict:
    """The whole user path for one cell (this process) -> one result row."""
    import csv

    model, mode = cell.split(":")
    work.mkdir(parents=True, exist_ok=True)
    log, run = work / "log.txt", work / "run"
    classes = sorted(p.name for p in tree.iterdir() if p.is_dir())
    row: dict = {"cell": cell, "backend": os.environ.get("KERAS_BACKEND", "tensorflow"), "steps": {}}
    t0 = time.perf_counter()
    weights = make_weights(model, len(classes), size, work / "base.weights.h5")
    train = ["train", "--dataset", str(tree), "--model", model, "--mode", mode, "--weights", weights]
    train += ["--image-size", str(size), "--batch-size", str(batch), "--out", str(run)]
    for name, args in (
        ("train_e1", [*train, "--epochs", "1", "--no-evaluate"]),
        ("train_e2", [*train, "--epochs", "2"]),
    ):
        rc, s = cli(args, log)
        row["steps"][name] = {"rc": rc, "s": round(s, 1)}
        if rc:
            break
    else:
        row.update(compare(run, model, len(classes), size, weights, mode))
        with open(run / "history.csv") as f:
            hist = list(csv.DictReader(f))
        row["epochs"] = len(hist)
        row["steady_img_s"] = [round(float(h["steady_images_per_s"]), 1) for h in hist]
        row["report"] = (run / "eval" / "test" / "report.json").is_file()
        few = work / "few"
        few.mkdir(exist_ok=True)
        for c in classes[:3]:
            src = sorted((tree / c).iterdir())[0]
            (few / src.name).write_bytes(src.read_bytes())
        rc, s = cli(["explain", str(run), str(few), "--out", str(work / "cam")], log)
        row["steps"]["explain"] = {"rc": rc, "s": round(s, 1)}
        pngs = sorted((work / "cam").glob("*.png"))
        row["cam_pngs"] = len(pngs)
        row["cam_blank"] = sum(blank(p) for p in pngs)
    row["wall_s"] = round(time.perf_counter() - t0, 1)
    row["ok"] = verdict(row, mode)
    return row


def verdict(row: dict, mode: str) -> bool:
    """Every step exited 0, 2 epochs, report and non-blank CAMs written, backbone frozen (transfer) or trained."""
    if any(s["rc"] for s in row["steps"].values()) or row.get("epochs") != 2 or not row.get("report"):
        return False
    if row.get("cam_pngs", 0) == 0 or row.get("cam_blank", 1):
        return False
    frozen = row["backbone_equal"] == row["backbone_vars"]
    return frozen if mode == "transfer" else row["backbone_equal"] < row["backbone_vars"] or row["backbone_vars"] == 0


def table(rows: list[dict]) -> str:
    lines = ["| cell | backend | wall s | steady img/s (epochs 1, 2) | parameters (trainable) | backbone equal | ok |"]
    lines.append("|---|---|---|---|---|---|---|")
    for r in rows:
        eq = f"{r['backbone_equal']}/{r['backbone_vars']}" if "backbone_vars" in r else "-"
        par = f"{r['params']:,} ({r['trainable']:,})" if "params" in r else "-"
        bad = ", ".join(f"{k} rc {v['rc']}" for k, v in r["steps"].items() if v["rc"])
        rate = ", ".join(str(x) for x in r.get("steady_img_s", []))
        ok = "ok" if r["ok"] else f"FAIL {bad}".strip()
        lines.append(f"| {r['cell']} | {r['backend']} | {r['wall_s']} | {rate} | {par} | {eq} | {ok} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tree", type=Path, nargs="?", help="plain tree of class folders")
    p.add_argument("--out", type=Path, default=Path("bench-out/matrix"))
    p.add_argument("--cells", default="", help="model:mode,... (default: every cell)")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--jobs", type=int, default=1, help="cells at a time (each its own process)")
    p.add_argument("--cell", help=argparse.SUPPRESS)  # internal: run one cell in this process, print its row
    a = p.parse_args()
    if a.tree is None:
        p.error("TREE is required")
    if a.cell:
        row = run_cell(a.cell, a.tree.resolve(), a.image_size, a.batch_size, a.out)
        print("ROW " + json.dumps(row))
        return
    cells = a.cells.split(",") if a.cells else all_cells()
    a.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="matrix-"))
    rows: list[dict] = []
    lock = threading.Lock()

    def one(cell: str) -> dict:
        d = work / cell.replace(":", "-")
        args = [str(a.tree), "--cell", cell, "--image-size", str(a.image_size), "--batch-size", str(a.batch_size)]
        r = subprocess.run([sys.executable, __file__, *args, "--out", str(d)], capture_output=True, text=True)
        found = [ln[4:] for ln in r.stdout.splitlines() if ln.startswith("ROW ")]
        row = (
            json.loads(found[-1])
            if found
            else {
                "cell": cell,
                "backend": "?",
                "wall_s": 0,
                "ok": False,
                "steps": {"cell": {"rc": r.returncode, "s": 0}},
            }
        )
        if not found:
            row["error"] = r.stderr[-2000:]
        log = d / "log.txt"
        if log.is_file():
            (a.out / f"{cell.replace(':', '-')}.log").write_text(log.read_text()[-20000:])
        with lock:  # cells finish in worker threads: one writer at a time
            rows.append(row)
            rows.sort(key=lambda x: cells.index(x["cell"]) if x["cell"] in cells else 0)
            (a.out / "matrix.json").write_text(json.dumps(rows, indent=1))
            (a.out / "matrix.md").write_text(table(rows))
        print(f"{cell}: {'ok' if row['ok'] else 'FAIL'} {row['wall_s']} s", flush=True)
        return row

    with ThreadPoolExecutor(a.jobs) as pool:
        list(pool.map(one, cells))
    shutil.rmtree(work, ignore_errors=True)  # the runs (the logs' tails are kept in OUT)
    print(table(rows))


if __name__ == "__main__":
    main()
