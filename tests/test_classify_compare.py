"""classify compare tells runs apart (dataset and protocol, model, weights, mode, size, epochs) and keeps stderr
to what the user needs, on tiny REAL trees copied into tmp from the shared PBC sample."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")

from naturalize.classes import class_of_prefix  # noqa: E402
from naturalize.testing.cli import run_cli  # noqa: E402

SIZE = 16
CLASSES = ("BA", "EO", "LY")


pytestmark = pytest.mark.usefixtures("classify_cache")  # decoded images in a cache of this module's own


def _pick(sample_release: Path, per_class: int) -> dict[str, list[Path]]:
    picked: dict[str, list[Path]] = {c: [] for c in CLASSES}
    for p in sorted(sample_release.rglob("*.jpg")):
        c = class_of_prefix(p.name)
        if c in picked and len(picked[c]) < per_class:
            picked[c].append(p)
    return picked


@pytest.fixture(scope="module")
def trees(sample_release, tmp_path_factory) -> dict[str, Path]:
    """`paper`: a split tree (3/1/1 real images a class) with a Naturalize dataset.json (recipe 1k-pbc, protocol
    paper); `plain`: the same 5 images a class as a plain class tree."""
    base = tmp_path_factory.mktemp("trees")
    paper, plain = base / "paper-build", base / "my-cells"
    for c, files in _pick(sample_release, 5).items():
        for split, part in (("train", files[:3]), ("val", files[3:4]), ("test", files[4:])):
            (paper / split / c).mkdir(parents=True, exist_ok=True)
            (plain / c).mkdir(parents=True, exist_ok=True)
            for f in part:
                shutil.copy(f, paper / split / c / f.name)
                shutil.copy(f, plain / c / f.name)
    meta = {"format": "naturalize-dataset/1", "recipe": "1k-pbc", "protocol": "paper", "classes": list(CLASSES)}
    (paper / "dataset.json").write_text(json.dumps(meta))
    return {"paper": paper, "plain": plain}


def _train(dataset: Path, out: Path, **kw) -> Path:
    from classify.train import train

    opts = dict(epochs=1, batch_size=4, image_size=SIZE, evaluate=False, progress=False, log=lambda s: None)
    return train(dataset, "custom_cnn", out, **{**opts, **kw})


@pytest.fixture(scope="module")
def paper_run(trees, tmp_path_factory) -> Path:
    """`_train(trees["paper"], ...)` with its defaults (seed 0, 1 epoch, not evaluated), trained once; tests take a
    copy (`_copy`), as their own runs of those options would be, since they evaluate, rewrite or damage it."""
    return _train(trees["paper"], tmp_path_factory.mktemp("runs") / "paper-run")


def _copy(run: Path, out: Path) -> Path:
    """A copy of `run` at `out` (parents made): the run a `_train` of the same options into `out` writes."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copytree(run, out))


def test_compare_names_dataset_protocol_weights_and_epochs_of_each_run(trees, paper_run, tmp_path):
    """Runs of one model that differ only in dataset, protocol, weights or epochs were told apart by folder name
    alone; the table now says dataset (with a Naturalize build's recipe and protocol), weights, mode, size,
    epochs."""
    from classify.compare import table

    a = _copy(paper_run, tmp_path / "a")
    b = _train(trees["plain"], tmp_path / "b", epochs=2)
    c = _train(trees["paper"], tmp_path / "c", weights=str(a / "model.keras"))
    lines = table([a, b, c]).splitlines()
    head = [h.strip() for h in lines[0].strip("|").split("|")]
    assert head[:9] == ["run", "dataset", "model", "weights", "mode", "backend", "test set", "size", "epochs"]
    assert head[9:] == ["train acc %", "val acc %", "test acc %", "test macro-P %", "test macro-R %", "test macro-F1 %"]
    assert lines[1].count("|") == len(head) + 1
    rows = [dict(zip(head, (v.strip() for v in line.strip("|").split("|")))) for line in lines[2:5]]
    assert [r["dataset"] for r in rows] == ["paper-build (1k-pbc, paper)", "my-cells", "paper-build (1k-pbc, paper)"]
    assert [r["weights"] for r in rows] == ["none", "none", "model.keras"]
    assert [r["epochs"] for r in rows] == ["1", "2", "1"]
    assert all(r["model"] == "custom_cnn" and r["mode"] == "finetune" and r["size"] == str(SIZE) for r in rows)
    assert all(r["backend"] == "tensorflow" for r in rows)
    # a and c were tested on the paper tree's test/, b on its own 80/10/10 split of a plain tree: other images
    assert rows[0]["test set"] == rows[2]["test set"] != rows[1]["test set"]
    assert lines[5:] == [
        "",
        f"note: these runs were tested on 2 different test sets ({rows[0]['test set']}: a, c; "
        f"{rows[1]['test set']}: b); their test scores are not measured on the same images (the column test set "
        "names the images and labels scored).",
    ]


def test_a_test_set_is_named_by_its_images_and_labels_not_by_its_paths(trees, tmp_path):
    """Two runs scored on the same test images were not told apart from runs scored on other images: compare's
    table looked the same. Now report.json names the scored images (content and label), so a copy of a test set
    in another folder is the same test set, and one image moved to another class is not."""
    from classify.datasets import load_dataset

    copy = tmp_path / "elsewhere" / "copy-of-paper-build"
    shutil.copytree(trees["paper"], copy)
    first = load_dataset(trees["paper"], seed=0).images_digest("test")
    assert load_dataset(copy, seed=0).images_digest("test") == first
    assert load_dataset(trees["paper"], seed=0).images_digest("val") != first
    ba, eo = (sorted((copy / "test" / c).iterdir())[0] for c in ("BA", "EO"))
    ba.rename(copy / "test" / "EO" / ba.name)  # the same bytes, each under the other label
    eo.rename(copy / "test" / "BA" / eo.name)
    assert load_dataset(copy, seed=0).images_digest("test") != first


def test_epochs_cell_says_when_a_run_stopped_early(tmp_path):
    from classify.compare import epochs_cell

    (tmp_path / "state.json").write_text(json.dumps({"epoch": 3, "done": False}))
    assert epochs_cell(tmp_path, {"epochs": 10}) == "3 of 10"
    assert epochs_cell(tmp_path, {"epochs": 3}) == "3"


def test_compare_of_several_unevaluated_runs_prints_no_retracing_warning(trees, paper_run, tmp_path):
    """Evaluating 9 splits of 3 models in one process made TensorFlow warn that a function 'triggered
    tf.function retracing' (twice, 600 characters each) above the table."""
    runs = [_copy(paper_run, tmp_path / "r0")] + [_train(trees["paper"], tmp_path / f"r{i}", seed=i) for i in (1, 2)]
    r = run_cli("classify", "compare", *runs, env={"TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "retracing" not in r.stderr, r.stderr[-2000:]
    assert len(r.stdout.strip().splitlines()) == 2 + 3
    assert all((run / "eval" / "test" / "report.json").is_file() for run in runs)


def test_an_evaluation_says_which_protocol_made_the_dataset(trees, paper_run, tmp_path):
    """report.json and report.txt of a paper-protocol dataset said nothing of its protocol: a test accuracy read
    from them could not be told from a clean build's. They now name it (and what it means); a plain tree has none."""
    from classify.evaluate import evaluate_run
    from naturalize.pngmeta import read_provenance

    paper = evaluate_run(_copy(paper_run, tmp_path / "a"), "test", progress=False)
    assert paper["protocol"] == "paper"
    assert json.loads((Path(paper["out"]) / "report.json").read_text())["protocol"] == "paper"
    text = (Path(paper["out"]) / "report.txt").read_text()
    assert "protocol paper:" in text and "optimistic" in text
    assert read_provenance(Path(paper["out"]) / "confusion.png")["protocol"] == "paper"
    plain = evaluate_run(_train(trees["plain"], tmp_path / "b"), "test", progress=False)
    assert plain["protocol"] is None and "protocol" not in (Path(plain["out"]) / "report.txt").read_text()


def test_compare_scores_the_model_a_continued_run_keeps_now(trees, paper_run, tmp_path):
    """compare reused eval/test/report.json of the first best model after a continued run (--epochs 8,
    --no-evaluate) had kept a better one: test acc 13.64 beside a fresh val acc 27.27 of the new model, two models
    in one row; the test column was the old model's, the current one scores 27.27 there."""
    from classify.compare import run_scores
    from classify.evaluate import evaluate_run

    run = _copy(paper_run, tmp_path / "r")  # epochs=1
    first = evaluate_run(run, "test", progress=False)
    model = run / "model.keras"
    model.write_bytes(model.read_bytes())  # not yet a new model: the same bytes are the same model
    assert run_scores(run)["test"] == {k: v for k, v in first.items() if k != "out"}
    # another model kept in its place: the epoch-1 model of another seed (as a continued run's new best would be)
    other = _train(trees["paper"], tmp_path / "other", epochs=1, seed=7)
    shutil.copy(other / "model.keras", model)
    now = evaluate_run(other, "test", progress=False)
    assert now["confusion"] != first["confusion"] or now["loss"] != first["loss"]
    got = run_scores(run)["test"]
    assert (got["accuracy"], got["loss"], got["confusion"]) == (now["accuracy"], now["loss"], now["confusion"])


def test_compare_tells_apart_two_runs_of_one_folder_name(trees, paper_run, tmp_path):
    """`compare exp1/run exp2/run` printed two rows named `run`: which was which could not be read from the table."""
    from classify.compare import table

    a = _copy(paper_run, tmp_path / "exp1" / "run")
    b = _train(trees["paper"], tmp_path / "exp2" / "run", seed=1)
    c = _copy(paper_run, tmp_path / "other")
    rows = [line.strip("|").split("|")[0].strip() for line in table([a, b, c]).splitlines()[2:]]
    assert rows == [a.as_posix(), b.as_posix(), "other"]


def test_compare_evaluates_again_a_split_whose_report_is_damaged(trees, paper_run, tmp_path):
    """A damaged RUN/eval/test/report.json (a disk full, an editor) ended `classify compare` in a JSONDecodeError
    traceback; it is evaluated again, as a missing one is."""
    from classify.compare import run_scores
    from classify.evaluate import evaluate_run

    run = _copy(paper_run, tmp_path / "r")  # epochs=1
    first = evaluate_run(run, "test", progress=False)
    report = run / "eval" / "test" / "report.json"
    report.write_text('{"accuracy": 0.')
    again = run_scores(run)["test"]
    assert {k: v for k, v in again.items() if k != "out"} == {k: v for k, v in first.items() if k != "out"}
    assert json.loads(report.read_text())["accuracy"] == first["accuracy"]
