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


pytestmark = pytest.mark.usefixtures("classify_cache")  # decoded images in a cache of this module's own


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


def test_evaluate_scores_an_external_set_holding_some_of_the_runs_classes(run, images, sample_release, tmp_path):
    """A lab's folder with only some of the run's classes was refused ("the run was trained on classes ... but
    dataset ... has"): it is scored on the classes it holds, names the absent ones, averages over the present ones
    (scikit-learn's labels=), and counts predictions that fall in an absent class in that class's column. A folder
    of a class the run does not know is still refused, naming it."""
    import json

    from sklearn.metrics import classification_report, confusion_matrix

    from classify.evaluate import evaluate_run

    ext = _plain(tmp_path / "lab-cells", {c: images[c] for c in ("BA", "LY")})
    res = evaluate_run(run, None, ext, progress=False)
    out = Path(res["out"])
    assert res["n"] == 14 and res["absent"] == ["EO"] and res["classes"] == list(CLASSES)
    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    truth, pred = [r["true"] for r in rows], [r["pred"] for r in rows]
    assert set(truth) == {"BA", "LY"}
    assert res["report"] == classification_report(truth, pred, labels=["BA", "LY"], output_dict=True, zero_division=0)
    assert res["confusion"] == confusion_matrix(truth, pred, labels=list(CLASSES)).tolist()  # EO: a column only
    assert res["predicted_absent"] == pred.count("EO")
    assert json.loads((out / "report.json").read_text())["absent"] == ["EO"]
    assert (
        "absent classes (no images here; the report and its macro/weighted averages cover the other 2): EO"
        in (out / "report.txt").read_text()
    )

    erb = sorted(sample_release.glob("erythroblast/*.jpg"))[0]
    odd = _plain(tmp_path / "odd-cells", {"BA": images["BA"], "ERB": [erb]})
    with pytest.raises(UserError, match="has class folder\\(s\\) ERB that the run was not trained on"):
        evaluate_run(run, None, odd, progress=False)


def _odd_entries(folder: Path, jpg: Path) -> None:
    """A GIF and a text file (not read), and an image-named dangling symlink (an unreadable image), in `folder`."""
    from PIL import Image

    with Image.open(jpg) as im:
        im.save(folder / "cell.gif")
    (folder / "notes.txt").write_text("counted by hand\n")
    _dangling(folder)


def _dangling(folder: Path) -> None:
    (folder / "gone.jpg").symlink_to(folder / "moved-away" / "gone.jpg")


def test_predict_and_explain_name_what_they_skip(run, images, tmp_path):
    """A .gif, a notes.txt and a dangling gone.jpg in a folder were skipped without a word: predict and explain
    now say so, one line for the files they do not read and one for the image they cannot."""
    from classify.predict import predict
    from classify.scorecam import explain

    folder = _plain(tmp_path / "cells", {"BA": images["BA"][:1]}) / "BA"
    _odd_entries(folder, images["BA"][0])
    said: list[str] = []
    rows = list(csv.DictReader(predict(run, [tmp_path / "cells"], progress=False, warn=said.append).splitlines()))
    assert [Path(r["path"]).name for r in rows] == [images["BA"][0].name]
    assert len(said) == 2, said
    assert said[0].startswith("warning: skipped 2 entries (not bmp/jpeg/jpg/png/tif/tiff/webp image files), e.g. ")
    assert str(folder / "cell.gif") in said[0]
    assert "gone.jpg (a dangling symlink to " in said[1]

    said.clear()
    pngs = explain(run, [folder], tmp_path / "cams", max_channels=2, progress=False, warn=said.append)
    assert len(pngs) == 1 and len(said) == 2 and "skipped 2 entries" in said[0] and "dangling symlink" in said[1]


def test_train_and_evaluate_name_what_they_skip_and_refuse_a_dangling_image(run, images, tmp_path):
    """Class folders: files that are not read (a .gif, notes.txt, a subfolder) are one warning line; an image-named
    dangling symlink is an unreadable image, refused in one line naming it, before a run folder is left."""
    from classify.evaluate import evaluate_run
    from classify.train import train

    tree = _plain(tmp_path / "cells", {c: fs[:5] for c, fs in images.items()})
    (tree / "EO" / "more").mkdir()
    (tree / "LY" / "notes.txt").write_text("counted by hand\n")
    said: list[str] = []
    res = evaluate_run(run, None, tree, progress=False, warn=said.append)
    assert res["n"] == 15 and len(said) == 1
    assert said[0].startswith("warning: skipped 2 entries (not bmp/")
    assert f"e.g. {tree / 'EO' / 'more'}/ (a folder in a class folder: not searched)" in said[0]

    said.clear()
    _dangling(tree / "LY")
    with pytest.raises(UserError, match=r"gone\.jpg \(a dangling symlink to .*\); remove or replace"):
        train(tree, "custom_cnn", tmp_path / "r", epochs=1, image_size=SIZE, progress=False, warn=said.append)
    assert len(said) == 1 and not (tmp_path / "r").exists()


def test_evaluate_writes_the_same_report_for_a_relative_or_an_absolute_run(run, tmp_path, monkeypatch):
    """report.txt's first line named the run as typed (`run runs/x`, or `run /abs/runs/x`) while report.json named it
    resolved, so evaluating one run from its folder's parent and by its absolute path wrote different files. Both now
    name it resolved: the same bytes whichever way it is given."""
    from classify.evaluate import evaluate_run

    texts = []
    for k, given in enumerate((run, Path(run.name))):
        monkeypatch.chdir(run.parent)
        res = evaluate_run(given, "test", out=tmp_path / f"e{k}", progress=False)
        texts.append({f: (Path(res["out"]) / f).read_bytes() for f in ("report.txt", "report.json")})
    assert texts[0] == texts[1]
    assert texts[0]["report.txt"].decode().startswith(f"run {run.resolve()}  ")


def test_running_out_of_memory_is_one_error_line_naming_what_to_lower(images, tmp_path):
    """`classify train --image-size 100000` asked NumPy for 1.8 TiB for the decoded images and ended in a rich
    traceback (a CUDA or TensorFlow allocation failure did too: an ensemble's Score-CAM ran a GPU out of memory).
    Now one `error:` line, exit code 1, naming the options that lower memory; nothing is left behind."""
    from naturalize.testing.cli import run_cli

    tree = _plain(tmp_path / "tree", images)
    out = tmp_path / "run"
    args = ("train", "--dataset", tree, "--model", "custom_cnn", "--epochs", 1, "--out", out)
    done = run_cli("classify", *args, "--image-size", 100000, env={"TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    assert done.returncode == 1 and len(errors) == 1, done.stderr[-2000:]
    assert "out of memory (MemoryError: Unable to allocate" in errors[0] and "--image-size" in errors[0]
    assert "Traceback" not in done.stderr and "╭" not in done.stderr
    assert not out.exists()  # refused before the run folder was claimed
