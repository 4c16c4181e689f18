"""The examples/ scripts run on small data (the drawn stand-in set) and the notebook is a valid notebook."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(script: str, *args: str, tmp: Path) -> str:
    env = dict(os.environ, CLASSIFY_CACHE=str(tmp / "cache"), TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True, timeout=600, env=env, cwd=tmp
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def drawn(tmp_path_factory) -> Path:
    from naturalize.drawn import write_drawn_release

    return write_drawn_release(tmp_path_factory.mktemp("drawn") / "drawn-pbc", 8, seed=0, progress=False)


@pytest.fixture(scope="module")
def trained(drawn: Path, tmp_path_factory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("bt")
    stdout = _run(
        "build_and_train.py",
        "--pbc",
        str(drawn),
        "--recipe",
        "custom",
        "--classes",
        "PMY,MY",
        "--per-class",
        "4",
        "--model",
        "custom_cnn",
        "--image-size",
        "48",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--workers",
        "1",
        "--out",
        str(tmp / "out"),
        tmp=tmp,
    )
    return tmp / "out", stdout


@pytest.mark.slow
def test_compose_from_bank_makes_images_and_a_sheet(drawn: Path, tmp_path: Path) -> None:
    out = tmp_path / "c"
    stdout = _run(
        "compose_from_bank.py",
        "--pbc",
        str(drawn),
        "--limit",
        "6",
        "--class",
        "PMY",
        "--n",
        "4",
        "--out",
        str(out),
        tmp=tmp_path,
    )
    assert len(list((out / "images" / "PMY").glob("PMY_syn_0_*.jpg"))) == 4
    assert (out / "sheet.png").is_file() and (out / "images" / "manifest.jsonl").is_file()
    assert "composed 4 images" in stdout


@pytest.mark.slow
def test_build_and_train_writes_a_dataset_and_an_evaluated_run(trained: tuple[Path, str]) -> None:
    out, stdout = trained
    meta = json.loads((out / "dataset" / "dataset.json").read_text())
    assert meta["protocol"] == "clean" and meta["synthetic_counts"]["PMY"] == 4
    assert not list((out / "dataset" / "test").rglob("*_syn_*"))
    assert (out / "run" / "eval" / "test" / "confusion.png").is_file()
    assert "test accuracy" in stdout


@pytest.mark.slow
def test_explain_prediction_prints_classes_and_writes_score_cam(trained: tuple[Path, str], tmp_path: Path) -> None:
    out, _ = trained
    images = sorted((out / "dataset" / "test").rglob("*.jpg"))[:2]
    stdout = _run(
        "explain_prediction.py",
        "--run",
        str(out / "run"),
        *map(str, images),
        "--max-channels",
        "8",
        "--out",
        str(tmp_path / "x"),
        tmp=tmp_path,
    )
    assert sum(str(p) in stdout for p in images) == 2
    # files from different folders keep those folders under --out (below the inputs' common folder)
    written = sorted(p.relative_to(tmp_path / "x").as_posix() for p in (tmp_path / "x").rglob("*.png"))
    assert written == sorted(f"{p.parent.name}/{p.stem}_scorecam.png" for p in images)


def test_quickstart_notebook_is_valid_with_code_cells_and_no_outputs() -> None:
    nb = json.loads((EXAMPLES / "quickstart.ipynb").read_text(encoding="utf-8"))
    assert nb["nbformat"] == 4 and isinstance(nb["metadata"], dict)
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert len(code) >= 4
    for c in code:
        assert c["outputs"] == [] and c["execution_count"] is None
        compile("".join(c["source"]), "<cell>", "exec")  # every cell is valid Python
    text = "".join("".join(c["source"]) for c in code)
    for api in ("write_drawn_release", "segment(", "compose_class(", "build(", "train(", "explain("):
        assert api in text, api
