"""What classify reads from its inputs: every image of an external test set (`evaluate --split all`), and files
it does not read are named, not skipped without a word. Tiny REAL trees copied into tmp from the PBC sample."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")

from naturalize.classes import class_of_prefix  # noqa: E402
from naturalize.fsio import UserError  # noqa: E402

SIZE = 16
CLASSES = ("BA", "EO", "LY")


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory):
    old = os.environ.get("CLASSIFY_CACHE")
    os.environ["CLASSIFY_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("CLASSIFY_CACHE", None)
    else:
        os.environ["CLASSIFY_CACHE"] = old


@pytest.fixture(scope="module")
def images(sample_release) -> dict[str, list[Path]]:
    """7 real images a class: 5 for the run's split tree (3/1/1), 2 more for external sets."""
    picked: dict[str, list[Path]] = {c: [] for c in CLASSES}
    for p in sorted(sample_release.rglob("*.jpg")):
        c = class_of_prefix(p.name)
        if c in picked and len(picked[c]) < 7:
            picked[c].append(p)
    return picked


def _plain(root: Path, files: dict[str, list[Path]]) -> Path:
    for c, fs in files.items():
        (root / c).mkdir(parents=True, exist_ok=True)
        for f in fs:
            shutil.copy(f, root / c / f.name)
    return root


@pytest.fixture(scope="module")
def run(images, tmp_path_factory) -> Path:
    from classify.train import train

    base = tmp_path_factory.mktemp("own")
    tree = base / "tree"
    for c, fs in images.items():
        for split, part in (("train", fs[:3]), ("val", fs[3:4]), ("test", fs[4:5])):
            _plain(tree / split, {c: part})
    return train(
        tree, "custom_cnn", base / "run", epochs=1, batch_size=4, image_size=SIZE, progress=False, log=lambda s: None
    )


def test_evaluate_scores_a_whole_external_plain_tree(run, images, tmp_path):
    """`evaluate RUN --dataset other-cells/` on a plain class tree scored only the 10 % test split it made of it
    (3 of 21 images here), and a tree with under 3 images a class was refused as too few to split: an external
    test set is now scored whole by default (--split all), and --split all works on any tree but the run's own."""
    from classify.evaluate import evaluate_run

    ext = _plain(tmp_path / "other-cells", images)
    res = evaluate_run(run, None, ext, progress=False)
    assert res["split"] == "all" and res["n"] == 21 and Path(res["out"]) == run / "eval" / "other-cells-all"
    with open(Path(res["out"]) / "predictions.csv", newline="") as f:
        scored = sorted(Path(r["path"]).name for r in csv.DictReader(f))
    assert scored == sorted(p.name for fs in images.values() for p in fs)
    assert "split all  n 21" in (Path(res["out"]) / "report.txt").read_text()

    small = _plain(tmp_path / "two-each", {c: fs[5:] for c, fs in images.items()})
    assert evaluate_run(run, "all", small, progress=False)["n"] == 6
    assert evaluate_run(run, "test", ext, progress=False)["n"] == 3  # asked for: the seeded 80/10/10 test split
    copy = shutil.copytree(run.parent / "tree", tmp_path / "split-copy")
    assert evaluate_run(run, "all", copy, progress=False)["n"] == 15  # a split tree: all its splits
    assert evaluate_run(run, None, copy, progress=False)["split"] == "test"
    with pytest.raises(UserError, match="--split all would score .* on its own training images"):
        evaluate_run(run, "all", run.parent / "tree", progress=False)
    with pytest.raises(UserError, match="--split 'tets' is not one of train, val, test, all"):
        evaluate_run(run, "tets", progress=False)
