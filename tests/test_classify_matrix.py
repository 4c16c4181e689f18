"""benchmarks/classify_matrix.py: the models x modes check runs a cell end to end on the CPU (the user's commands:
train, resume, explain) and judges it, so a GPU loan is not spent on a broken script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from naturalize.classes import class_of_prefix

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_matrix_cell_runs_the_user_path_and_is_judged(sample_release, tmp_path):
    pytest.importorskip("keras")
    tree = tmp_path / "tree"
    picked: dict[str, list[Path]] = {"BA": [], "EO": [], "LY": []}  # 10 real images a class
    for p in sorted(sample_release.rglob("*.jpg")):
        c = class_of_prefix(p.name)
        if c in picked and len(picked[c]) < 10:
            picked[c].append(p)
    for c, files in picked.items():
        (tree / c).mkdir(parents=True)
        for p in files:
            shutil.copy(p, tree / c / p.name)
    out = tmp_path / "out"
    args = [str(tree), "--out", str(out), "--cells", "custom_cnn:finetune", "--image-size", "32", "--batch-size", "8"]
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "classify_matrix.py"), *args],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = json.loads((out / "matrix.json").read_text())
    assert row["ok"], row
    assert row["epochs"] == 2 and row["report"] and row["cam_pngs"] == 3 and row["cam_blank"] == 0
    assert row["params"] == row["trainable"] > 0 and set(row["steps"]) == {"train_e1", "train_e2", "explain"}
    assert "| custom_cnn:finetune | tensorflow |" in (out / "matrix.md").read_text()
    assert "$ classify train" in (out / "custom_cnn-finetune.log").read_text()
