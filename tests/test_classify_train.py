"""classify end to end on a tiny REAL tree (copied into tmp from the shared PBC sample): train under the
TensorFlow and torch backends, resume, evaluate (equal to scikit-learn), predict, explain, compare, CLI errors."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")

from naturalize.classes import CLASSES, class_of_prefix  # noqa: E402
from naturalize.fsio import UserError  # noqa: E402
from naturalize.testing.cli import run_cli  # noqa: E402

SIZE = 32
RUN_FILES = {
    "model.keras",
    "last.keras",
    "classes.json",
    "config.json",
    "history.csv",
    "curves.png",
    "state.json",
    "split.csv",
}
EVAL_FILES = {"report.txt", "report.json", "predictions.csv", "confusion.png"}


@pytest.fixture(scope="module")
def tiny_tree(sample_release, tmp_path_factory) -> Path:
    """train/val/test/<CLASS>/ with 3/1/1 real images per class, copied into tmp."""
    root = tmp_path_factory.mktemp("tiny") / "tiny-pbc"
    picked: dict[str, list[Path]] = {c: [] for c in CLASSES}
    for p in sorted(sample_release.rglob("*.jpg")):
        c = class_of_prefix(p.name)
        if c and len(picked[c]) < 5:
            picked[c].append(p)
    for c, files in picked.items():
        assert len(files) == 5, c
        for split, part in (("train", files[:3]), ("val", files[3:4]), ("test", files[4:])):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for f in part:
                shutil.copy(f, root / split / c / f.name)
    return root


pytestmark = pytest.mark.usefixtures("classify_cache")  # decoded images in a cache of this module's own


@pytest.fixture(scope="module")
def tf_run(tiny_tree, tmp_path_factory) -> Path:
    from classify.train import train

    out = tmp_path_factory.mktemp("runs") / "tf"
    train(tiny_tree, "custom_cnn", out, epochs=1, batch_size=8, image_size=SIZE, progress=False, log=lambda s: None)
    return out


STRAIGHT = dict(batch_size=8, image_size=SIZE, seed=3, progress=False, evaluate=False, log=lambda s: None)


@pytest.fixture(scope="module")
def straight4(tiny_tree, tmp_path_factory) -> Path:
    """4 epochs without a stop (STRAIGHT options): what the resume tests compare with; read only."""
    from classify.train import train

    return train(tiny_tree, "custom_cnn", tmp_path_factory.mktemp("runs") / "straight", epochs=4, **STRAIGHT)


def _error_lines(stderr: str) -> list[str]:
    """The CLI's own error lines (TensorFlow's C++ start-up log lines, which it cannot silence, left out)."""
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _cli(*args, env=None, cwd=None):
    return run_cli("classify", *args, env={"TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}, cwd=cwd, timeout=300)


def _complete(run: Path, backend: str) -> None:
    assert RUN_FILES <= {p.name for p in run.iterdir()}
    for split in ("train", "val", "test"):
        assert EVAL_FILES <= {p.name for p in (run / "eval" / split).iterdir()}
    config = json.loads((run / "config.json").read_text())
    assert config["backend"] == backend and config["model"] == "custom_cnn" and config["image_size"] == SIZE
    assert json.loads((run / "classes.json").read_text()) == list(CLASSES)
    rows = list(csv.DictReader(open(run / "history.csv")))
    assert [r["epoch"] for r in rows] == ["1"] and 0 <= float(rows[0]["val_accuracy"]) <= 1
    # the steady rate (first batch, with the graph build, left out) beside the whole epoch's; 33 images in 5 batches
    assert float(rows[0]["steady_images_per_s"]) > 0 and float(rows[0]["train_images_per_s"]) > 0
    assert json.loads((run / "state.json").read_text())["done"] is True
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_one_epoch_under_tensorflow_writes_a_complete_run_dir(tf_run):
    _complete(tf_run, "tensorflow")


@pytest.mark.slow
def test_one_epoch_under_torch_writes_a_complete_run_dir_loadable_under_tensorflow(tiny_tree, tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "torch-run"
    r = _cli(
        "train",
        "--dataset",
        tiny_tree,
        "--model",
        "custom_cnn",
        "--epochs",
        1,
        "--batch-size",
        8,
        "--image-size",
        SIZE,
        "--out",
        out,
        env={"KERAS_BACKEND": "torch"},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "torch backend" in r.stdout
    _complete(out, "torch")
    from classify.runs import load_model

    model = load_model(out / "model.keras")  # saved under torch, read under this process's TensorFlow backend
    assert keras.ops.convert_to_numpy(model(np.zeros((1, SIZE, SIZE, 3), "float32"))).shape == (1, len(CLASSES))

    # inference on a torch run works under TensorFlow and gives torch's own predictions (eval/test, written above)
    from classify.predict import predict

    mine = {r["path"]: r for r in csv.DictReader(predict(out, [tiny_tree / "test"], progress=False).splitlines())}
    theirs = list(csv.DictReader(open(out / "eval" / "test" / "predictions.csv")))
    assert len(theirs) == len(mine) == len(CLASSES)
    for row in theirs:
        assert mine[row["path"]]["pred"] == row["pred"]
        for c in CLASSES:
            assert float(mine[row["path"]][f"prob_{c}"]) == pytest.approx(float(row[f"prob_{c}"]), abs=1e-5)

    # resuming it under TensorFlow is refused before anything is loaded (it used to segfault: exit 139)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    r = _cli(*_train_args(tiny_tree, out, epochs=2))
    assert r.returncode == 2 and len(_error_lines(r.stderr)) == 1, (r.returncode, r.stderr[-2000:])
    (line,) = _error_lines(r.stderr)
    assert "under the torch backend" in line and "KERAS_BACKEND=torch" in line and "new --out" in line
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def _train_args(tree: Path, out: Path, epochs: int) -> tuple:
    """`classify train` arguments of the tiny custom_cnn runs made here (the options tf_run was made with)."""
    return (
        "train",
        "--dataset",
        tree,
        "--model",
        "custom_cnn",
        "--epochs",
        epochs,
        "--batch-size",
        8,
        "--image-size",
        SIZE,
        "--no-evaluate",
        "--out",
        out,
    )


def test_resuming_a_run_of_another_backend_is_refused_before_loading_it(tf_run, tiny_tree, tmp_path):
    from classify.train import train

    out = tmp_path / "run"
    shutil.copytree(tf_run, out)
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "backend": "torch"}))  # as if trained under torch
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(UserError, match="trained under the torch backend .* rerun with KERAS_BACKEND=torch, or"):
        train(tiny_tree, "custom_cnn", out, epochs=2, batch_size=8, image_size=SIZE, progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # nothing loaded or rewritten


def test_resuming_a_run_trained_by_other_code_is_refused(tf_run, tiny_tree, tmp_path):
    """config.json recorded the Keras version but not the code that trained the run: after an edit of the training
    code (augmentation, model, batches) a rerun resumed it and mixed epochs of two versions. config.json now records
    `code`, and a run of another is refused with one line, before anything is loaded."""
    from classify.train import TRAIN_CODE, train
    from naturalize.codeversion import code_digest

    out = tmp_path / "run"
    shutil.copytree(tf_run, out)
    config = json.loads((out / "config.json").read_text())
    assert config["code"] == code_digest(*TRAIN_CODE)
    (out / "config.json").write_text(json.dumps({**config, "code": "0" * 64}))  # as another version wrote it
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(UserError, match="trained by another version of classify's training code .* new --out"):
        train(tiny_tree, "custom_cnn", out, epochs=2, batch_size=8, image_size=SIZE, progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # nothing loaded or rewritten


@pytest.mark.slow
def test_a_tensorflow_run_is_not_resumed_under_torch_but_predicts_the_same_there(tf_run, tiny_tree, tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "run"
    shutil.copytree(tf_run, out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    r = _cli(*_train_args(tiny_tree, out, epochs=2), env={"KERAS_BACKEND": "torch"})
    assert r.returncode == 2 and len(_error_lines(r.stderr)) == 1, (r.returncode, r.stderr[-2000:])
    assert "under the tensorflow backend" in _error_lines(r.stderr)[0]
    assert "KERAS_BACKEND=tensorflow" in _error_lines(r.stderr)[0]
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # config.json still says tensorflow

    r = _cli("predict", out, tiny_tree / "test", env={"KERAS_BACKEND": "torch"})
    assert r.returncode == 0, r.stderr[-2000:]
    mine = {r["path"]: r for r in csv.DictReader(r.stdout.splitlines())}
    for row in csv.DictReader(open(out / "eval" / "test" / "predictions.csv")):
        assert mine[row["path"]]["pred"] == row["pred"]
        assert float(mine[row["path"]]["prob"]) == pytest.approx(float(row[f"prob_{row['pred']}"]), abs=1e-5)


def test_evaluate_report_equals_scikit_learn_on_the_same_predictions(tf_run, tiny_tree):
    from sklearn.metrics import classification_report, confusion_matrix

    from classify.evaluate import predict_probs
    from classify.images import decode_all
    from classify.runs import load_model

    res = json.loads((tf_run / "eval" / "test" / "report.json").read_text())
    paths = sorted(tiny_tree.glob("test/*/*.jpg"), key=lambda p: (CLASSES.index(p.parent.name), p.name))
    y_true = [CLASSES.index(p.parent.name) for p in paths]
    probs = predict_probs(load_model(tf_run / "model.keras"), decode_all(paths, SIZE, progress=False))
    y_pred = probs.argmax(axis=1)
    rows = list(csv.DictReader(open(tf_run / "eval" / "test" / "predictions.csv")))
    assert [r["pred"] for r in rows] == [CLASSES[k] for k in y_pred]
    kw = dict(labels=list(range(11)), target_names=list(CLASSES), zero_division=0)
    assert res["report"] == classification_report(y_true, y_pred, output_dict=True, **kw)
    assert classification_report(y_true, y_pred, digits=4, **kw) in (tf_run / "eval/test/report.txt").read_text()
    assert res["confusion"] == confusion_matrix(y_true, y_pred, labels=list(range(11))).tolist()
    assert res["accuracy"] == pytest.approx(float(np.mean(y_pred == np.array(y_true))))
    assert res["loss"] == pytest.approx(float(-np.mean(np.log(np.clip(probs[np.arange(11), y_true], 1e-7, 1)))))


def test_resume_after_an_interruption_continues_from_the_last_finished_epoch(tiny_tree, tmp_path):
    from classify.train import read_history, train

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt

    out = tmp_path / "resumable"
    run = dict(epochs=3, batch_size=8, image_size=SIZE, progress=False)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_tree, "custom_cnn", out, callbacks=[Interrupt()], log=lambda s: None, **run)
    state = json.loads((out / "state.json").read_text())
    assert state["epoch"] == 1 and state["done"] is False
    first = read_history(out)
    assert len(first) == 1 and (out / "last.keras").is_file() and (out / "model.keras").is_file()
    logs: list[str] = []
    train(tiny_tree, "custom_cnn", out, evaluate=False, log=logs.append, **run)
    assert any(line.startswith("resuming") and "after epoch 1" in line for line in logs)
    epochs = [line for line in logs if line.startswith("epoch ")]
    assert len(epochs) == 2 and all(" img/s steady (full batches after the first), " in line for line in epochs), epochs
    hist = read_history(out)
    assert [r["epoch"] for r in hist] == [1, 2, 3] and hist[0] == first[0]
    assert json.loads((out / "state.json").read_text())["epoch"] == 3
    with pytest.raises(UserError, match="holds a different run \\(lr"):
        train(tiny_tree, "custom_cnn", out, lr=0.5, **run)


@pytest.mark.slow
def test_an_ensemble_trains_from_a_whole_model_weights_file_as_documented(tiny_tree, tmp_path):
    """docs/classify.md: for an ensemble, --weights PATH is the whole model's weights (model.save_weights); what the
    offline ImageNet error asks for. Here a randomly initialised ensemble saved to a file, not a download."""
    from classify.models import create_model
    from classify.train import train

    src = create_model("ensemble_average", len(CLASSES), "none", "finetune", SIZE)  # the same weights as transfer
    path = tmp_path / "ensemble.weights.h5"
    src.save_weights(path)
    logs: list[str] = []
    out = train(
        tiny_tree,
        "ensemble_average",
        tmp_path / "run",
        mode="transfer",
        weights=str(path),
        epochs=1,
        batch_size=8,
        image_size=SIZE,
        evaluate=False,
        progress=False,
        log=logs.append,
    )
    assert json.loads((out / "config.json").read_text())["weights"] == str(path.resolve())
    assert (out / "model.keras").is_file() and any(line.startswith("epoch 1:") for line in logs)
    from classify.runs import load_model

    trained = load_model(out / "model.keras")
    frozen = [layer for layer in trained.layers if isinstance(layer, keras.Model)]  # transfer: members' backbones kept
    before = {layer.name: layer for layer in src.layers if isinstance(layer, keras.Model)}
    assert len(frozen) == 2
    for member in frozen:
        (base,) = [m for m in member.layers if isinstance(m, keras.Model)]
        (base0,) = [m for m in before[member.name].layers if isinstance(m, keras.Model)]
        for a, b in zip(base0.get_weights(), base.get_weights()):
            np.testing.assert_array_equal(a, b)


def test_predict_explain_and_compare_on_a_run(tf_run, tiny_tree, tmp_path):
    from classify.compare import table
    from classify.predict import predict
    from classify.scorecam import explain

    text = predict(tf_run, [tiny_tree / "test"], progress=False)
    rows = list(csv.DictReader(text.splitlines()))
    assert len(rows) == 11 and all(r["pred"] in CLASSES for r in rows)
    assert all(abs(sum(float(r[f"prob_{c}"]) for c in CLASSES) - 1) < 1e-4 for r in rows)

    pngs = explain(tf_run, [tiny_tree / "test" / "BA"], tmp_path / "cams", max_channels=16, progress=False)
    from PIL import Image

    source = sorted((tiny_tree / "test" / "BA").iterdir())[0]
    with Image.open(source) as src, Image.open(pngs[0]) as im:
        assert im.format == "PNG" and "Score-CAM" in im.text["provenance"]
        meta = json.loads(im.text["provenance"])
        # drawn over the image at its own resolution (360x363-ish), not over the SIZE-px network input
        assert meta["image_size"] == list(src.size) and meta["input_size"] == SIZE < src.width
        assert im.width > 1.5 * src.width and im.height > 0.9 * src.height

    md = table([tf_run])
    test_rep = json.loads((tf_run / "eval" / "test" / "report.json").read_text())
    head = "| run | dataset | model | weights | mode | backend | test set | size | epochs |"
    assert md.splitlines()[0].startswith(head)
    assert f"{100 * test_rep['accuracy']:.2f}" in md.splitlines()[2]
    assert "| tensorflow |" in md.splitlines()[2]  # a torch run and a TensorFlow run are told apart
    assert f"{100 * test_rep['report']['macro avg']['f1-score']:.2f} |" in md.splitlines()[2]


def test_explain_keeps_subfolders_so_images_of_one_name_never_share_a_png(tf_run, tiny_tree, tmp_path):
    """FOLDER/a/b/X.jpg and FOLDER/c/X.jpg (different images, one name) -> OUT/a/b/X_scorecam.png and
    OUT/c/X_scorecam.png, each recording its own source; one image file still -> OUT/X_scorecam.png."""
    from PIL import Image

    from classify.scorecam import explain

    first, second = sorted((tiny_tree / "test" / "BA").iterdir())[0], sorted((tiny_tree / "test" / "EO").iterdir())[0]
    folder = tmp_path / "cells"
    for rel, src in (("a/b", first), ("c", second)):
        (folder / rel).mkdir(parents=True)
        shutil.copy(src, folder / rel / "PMY_377034.jpg")
    pngs = explain(tf_run, [folder], tmp_path / "cams", max_channels=4, progress=False)
    cams = tmp_path / "cams"
    assert sorted(pngs) == [cams / "a" / "b" / "PMY_377034_scorecam.png", cams / "c" / "PMY_377034_scorecam.png"]
    for png, rel in zip(sorted(pngs), ("a/b", "c")):
        with Image.open(png) as im:
            assert json.loads(im.text["provenance"])["source"] == str((folder / rel / "PMY_377034.jpg").resolve())
    marker = json.loads((cams / ".naturalize-output.json").read_text())
    assert marker["written"] == ["a", "c"]

    one = explain(tf_run, [folder / "c" / "PMY_377034.jpg"], tmp_path / "one", max_channels=4, progress=False)
    assert one == [tmp_path / "one" / "PMY_377034_scorecam.png"]


def test_predict_and_explain_count_the_hidden_files_they_skip_in_one_note(tf_run, tiny_tree, tmp_path):
    """predict and explain skipped .DS_Store, ._X.jpg (AppleDouble) and Thumbs.db in a folder silently, where
    prepare, segment, build, train and evaluate say so in one note line; now they print the same note (a hidden
    folder's files, e.g. .git/, are not counted), and read only the images."""
    folder = tmp_path / "cells"
    (folder / "sub").mkdir(parents=True)
    (folder / ".git").mkdir()
    first = sorted((tiny_tree / "test" / "BA").iterdir())[0]
    shutil.copy(first, folder / first.name)
    shutil.copy(first, folder / "sub" / ".copy.jpg")  # a hidden copy of an image, one folder down
    shutil.copy(first, folder / ".git" / "x.jpg")
    (folder / f"._{first.name}").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / "sub" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    note = "note: skipped 4 hidden or system file(s)"
    for args in (("predict",), ("explain", "--channels", "4", "--out", tmp_path / "cams")):
        r = _cli(args[0], tf_run, folder, *args[1:])
        notes = [line for line in r.stderr.splitlines() if line.startswith("note:")]
        assert r.returncode == 0 and len(notes) == 1 and notes[0].startswith(note), r.stderr
        assert "warning" not in r.stderr, r.stderr
    assert r.stdout.count("wrote ") == 1  # explain: the one image


def test_transfer_without_pretrained_weights_is_refused_before_any_work(tiny_tree, tmp_path):
    """--mode transfer trains only a head on a frozen backbone: from random weights (--weights none, or vit_b16's
    default) that is refused in one line, before the dataset is read or --out made."""
    from classify.train import train

    for model, weights in (("efficientnetv2b0", "none"), ("vit_b16", "none")):
        with pytest.raises(UserError, match=f"--mode transfer freezes the {model} backbone.*--mode finetune"):
            train(tmp_path / "no-dataset", model, tmp_path / "run", mode="transfer", weights=weights, image_size=SIZE)
    assert not (tmp_path / "run").exists()
    r = _cli("train", "--dataset", tiny_tree, "--model", "vit_b16", "--mode", "transfer", "--out", tmp_path / "cli")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    (line,) = _error_lines(r.stderr)
    assert line.startswith("error: --mode transfer freezes the vit_b16 backbone, but its weights are none (random)")
    assert "--weights PATH" in line and line.endswith("or use --mode finetune")
    assert not (tmp_path / "cli").exists()


def test_cam_names_never_collide(tmp_path):
    from classify.scorecam import cam_names

    def names(tmp: Path, files: list[str], inputs: list[str]) -> list[str]:
        for f in files:
            (tmp / f).parent.mkdir(parents=True, exist_ok=True)
            (tmp / f).touch()
        return [str(n) for n in cam_names([tmp / i for i in inputs], [tmp / f for f in files])]

    t = tmp_path
    assert names(t / "1", ["F/a/x.jpg", "F/c/x.jpg", "F/y.jpg"], ["F"]) == [
        "a/x_scorecam.png",
        "c/x_scorecam.png",
        "y_scorecam.png",
    ]
    # two folders or two files of one name in different places: the folders below their common one
    assert names(t / "2", ["p/test/x.jpg", "q/test/x.jpg"], ["p/test", "q/test"]) == [
        "p/test/x_scorecam.png",
        "q/test/x_scorecam.png",
    ]
    assert names(t / "3", ["p/x.jpg", "q/x.jpg"], ["p/x.jpg", "q/x.jpg"]) == ["p/x_scorecam.png", "q/x_scorecam.png"]
    assert names(t / "4", ["F/x.jpg", "F/x.png"], ["F"]) == ["x.jpg_scorecam.png", "x.png_scorecam.png"]


@pytest.mark.slow
def test_cli_bad_input_is_one_line_and_exit_2(tf_run, tiny_tree, tmp_path):
    r = _cli("train", "--dataset", tiny_tree, "--model", "resnet50")
    assert r.returncode == 2 and len(_error_lines(r.stderr)) == 1
    assert _error_lines(r.stderr)[0].startswith("error: unknown model 'resnet50'; use one of convnext_base")

    other = tmp_path / "other"  # some of the run's classes are fine (an external set); a class it does not know not
    for split in ("train", "val", "test"):
        for c in ("BA", "EO"):
            shutil.copytree(tiny_tree / split / c, other / split / c)
        shutil.copytree(tiny_tree / split / "LY", other / split / "LYMPHO")
    r = _cli("evaluate", tf_run, "--dataset", other)
    assert r.returncode == 2 and len(_error_lines(r.stderr)) == 1
    assert _error_lines(r.stderr)[0].startswith(f"error: dataset {other} has class folder(s) LYMPHO that the run")

    # Offline ImageNet download: a dead proxy makes the fetch fail like a machine without internet. No --weights:
    # imagenet is the default for a model Keras has ImageNet weights for.
    dead = {
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9",
        "http_proxy": "http://127.0.0.1:9",
        "KERAS_HOME": str(tmp_path / "keras"),
        "HOME": str(tmp_path),
    }
    r = _cli(
        "train",
        "--dataset",
        tiny_tree,
        "--model",
        "efficientnetv2b0",
        "--image-size",
        SIZE,
        "--out",
        tmp_path / "never",
        env=dead,
    )
    assert r.returncode == 2 and len(_error_lines(r.stderr)) == 1, r.stderr[-1500:]
    (line,) = _error_lines(r.stderr)
    assert line.startswith("error: could not get the ImageNet weights for efficientnetv2b0")
    assert "--weights PATH" in line and "--weights none" in line and not (tmp_path / "never" / "model.keras").exists()


def test_a_weights_file_that_does_not_fit_is_our_one_line_without_a_keras_warning_first(tiny_tree, tmp_path):
    """A custom_cnn weights file of 5 classes given to an 11-class run printed Keras's "UserWarning: Skipping nested
    container ... Affected layers will retain their freshly-initialized weights" (once per nested block: 489 lines
    for an ensemble) before our error line; the user sees our one line only."""
    from classify.models import create_model

    path = tmp_path / "cnn5.weights.h5"
    create_model("custom_cnn", 5, "none", "finetune", SIZE).save_weights(path)
    args = ("train", "--dataset", tiny_tree, "--model", "custom_cnn", "--image-size", SIZE, "--epochs", 1)
    r = _cli(*args, "--weights", path, "--out", tmp_path / "never")
    assert r.returncode == 2 and len(_error_lines(r.stderr)) == 1, r.stderr[-1500:]
    assert _error_lines(r.stderr)[0].startswith(f"error: cannot load weights {path.resolve()} into the whole custom")
    assert "Skipping nested container" not in r.stderr and "UserWarning" not in r.stderr, r.stderr[-1500:]


def test_a_plain_class_tree_is_split_saved_and_reused_by_evaluate(tmp_path):
    from PIL import Image

    from classify.evaluate import evaluate_run
    from classify.train import train

    rng = np.random.default_rng(0)
    for c in ("LY", "MO"):
        (tmp_path / "plain" / c).mkdir(parents=True)
        for i in range(10):  # odd sizes and modes on purpose: converted, not rejected
            mode_shape = [("L", (21, 25)), ("RGBA", (30, 22, 4)), ("RGB", (40, 40, 3))][i % 3]
            Image.fromarray(rng.integers(0, 255, mode_shape[1], dtype=np.uint8), mode_shape[0]).save(
                tmp_path / "plain" / c / f"{c}_{i}.png"
            )
    out = train(
        tmp_path / "plain",
        "custom_cnn",
        tmp_path / "run",
        epochs=1,
        batch_size=4,
        image_size=16,
        seed=5,
        evaluate=False,
        progress=False,
        log=lambda s: None,
    )
    rows = list(csv.DictReader(open(out / "split.csv")))
    counts = {s: sum(r["split"] == s for r in rows) for s in ("train", "val", "test")}
    assert counts == {"train": 16, "val": 2, "test": 2}
    config = json.loads((out / "config.json").read_text())
    assert config["layout"] == "plain" and config["counts"] == counts
    res = evaluate_run(out, "test", progress=False)
    test_paths = sorted(r["path"] for r in rows if r["split"] == "test")
    pred_paths = sorted(
        Path(r["path"]).relative_to(tmp_path / "plain").as_posix()
        for r in csv.DictReader(open(Path(res["out"]) / "predictions.csv"))
    )
    assert pred_paths == test_paths

    (tmp_path / "few" / "LY").mkdir(parents=True)
    (tmp_path / "few" / "MO").mkdir(parents=True)
    for c in ("LY", "MO"):
        for i in range(2):  # a class needs 3 images to give train, val and test one each
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "few" / c / f"{i}.png")
    with pytest.raises(UserError, match="too few to split 80/10/10"):
        train(tmp_path / "few", "custom_cnn", tmp_path / "run2", epochs=1, image_size=16, progress=False)


def test_a_failed_train_or_evaluate_leaves_no_folder_behind(tmp_path):
    """A corrupt image stops train and evaluate before their first file: the --out folder they created (holding
    only the output marker) is removed again, with the parents they created; an earlier run is left alone."""
    from PIL import Image

    from classify.evaluate import evaluate_run
    from classify.train import train

    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        for c in ("LY", "MO"):
            (tmp_path / "good" / split / c).mkdir(parents=True)
            for i in range(2):
                Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(
                    tmp_path / "good" / split / c / f"{c}_{i}.png"
                )
    shutil.copytree(tmp_path / "good", tmp_path / "bad")
    (tmp_path / "bad" / "train" / "LY" / "broken.png").write_bytes(b"garbage")
    (tmp_path / "bad" / "test" / "MO" / "broken.png").write_bytes(b"garbage")
    kw = dict(epochs=1, batch_size=4, image_size=16, evaluate=False, progress=False, log=lambda s: None)

    with pytest.raises(UserError, match="cannot be read"):
        train(tmp_path / "bad", "custom_cnn", tmp_path / "runs" / "bad", **kw)
    assert not (tmp_path / "runs").exists()
    run = train(tmp_path / "good", "custom_cnn", tmp_path / "run", **kw)
    with pytest.raises(UserError, match="cannot be read"):
        evaluate_run(run, "test", tmp_path / "bad", tmp_path / "evals" / "bad", progress=False)
    assert not (tmp_path / "evals").exists()
    (tmp_path / "good" / "train" / "MO" / "broken.png").write_bytes(b"garbage")
    with pytest.raises(UserError, match="cannot be read"):  # resuming a run: its folder and files stay
        train(tmp_path / "good", "custom_cnn", run, **{**kw, "epochs": 2})
    assert RUN_FILES - {"curves.png"} <= {p.name for p in run.iterdir()}


def test_resumed_training_equals_an_uninterrupted_run(tiny_tree, straight4, tmp_path):
    """2 epochs, then the same command with --epochs 4 (resume), gives the same epochs and weights as 4 straight:
    the optimizer state comes back from last.keras and every random stream is reseeded per epoch.

    Reseeding each epoch for exact resumes must not reset TensorFlow's global seed either: that made TensorFlow
    re-trace the train function at every epoch (EfficientNetV2-B0, 64 px, batch 30: epoch 2's first batch 34 s
    against 2-3 s for the others). Keras's TensorFlow random ops are stateless, so the run's seed set once is
    enough: after a new run's epochs, and after a resumed run's, it is still the run's seed."""
    from classify.runs import load_model
    from classify.train import read_history, train

    def seed_kept() -> bool:
        """TensorFlow's global seed is still the run's (a TensorFlow behaviour: always true under torch)."""
        if keras.backend.backend() != "tensorflow":
            return True
        import tensorflow as tf

        return tf.compat.v1.random.get_seed(None)[0] == STRAIGHT["seed"]  # (global seed, an op seed)

    train(tiny_tree, "custom_cnn", tmp_path / "resumed", epochs=2, **STRAIGHT)
    assert seed_kept()  # after a new run's epochs
    train(tiny_tree, "custom_cnn", tmp_path / "resumed", epochs=4, **STRAIGHT)
    assert seed_kept()  # and after a resumed run's
    cols = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")
    resumed, straight = (read_history(r) for r in (tmp_path / "resumed", straight4))
    assert [[r[c] for c in cols] for r in resumed] == [[r[c] for c in cols] for r in straight]
    a, b = (load_model(r / "last.keras", compile=True) for r in (tmp_path / "resumed", straight4))
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert int(a.optimizer.iterations.numpy()) == int(b.optimizer.iterations.numpy()) > 0


def test_a_kill_between_state_json_and_last_keras_resumes_exactly(tiny_tree, straight4, tmp_path):
    """kill -9 lands between the writes of an epoch's files: state.json says epoch 2 while last.keras still holds
    epoch 1 (its file as it was before the kill). The rerun must resume after epoch 1, not train on from epoch 1's
    weights as if they were epoch 2's (it silently skipped, or with the old write order repeated, an epoch)."""
    from classify.train import read_history, train

    run = tmp_path / "killed"
    train(tiny_tree, "custom_cnn", run, epochs=1, **STRAIGHT)
    shutil.copy(run / "last.keras", tmp_path / "epoch1.keras")
    train(tiny_tree, "custom_cnn", run, epochs=2, **STRAIGHT)
    shutil.copy(tmp_path / "epoch1.keras", run / "last.keras")  # what a kill before its replacement leaves
    logs: list[str] = []
    train(tiny_tree, "custom_cnn", run, epochs=4, **{**STRAIGHT, "log": logs.append})
    assert any(line.startswith("resuming") and "after epoch 1 " in line for line in logs)
    cols = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")
    resumed, straight = (read_history(r) for r in (run, straight4))
    assert [[r[c] for c in cols] for r in resumed] == [[r[c] for c in cols] for r in straight]
    assert json.loads((run / "state.json").read_text())["epoch"] == 4


def test_resume_state_picks_the_entry_that_describes_last_keras():
    from classify.train import resume_state

    before = {"epoch": 1, "best_epoch": 1, "best_val_accuracy": 0.5, "done": False, "steps": 4}
    state = {"epoch": 2, "best_epoch": 2, "best_val_accuracy": 0.7, "done": False, "steps": 8, "previous": before}
    assert resume_state(state, 8) == {k: v for k, v in state.items() if k != "previous"}
    assert resume_state(state, 4) == before
    assert resume_state({"epoch": 3, "best_epoch": 1}, 12) == {"epoch": 3, "best_epoch": 1}  # an older run's file
    with pytest.raises(UserError, match="last.keras has taken 6 optimizer steps but state.json describes 8"):
        resume_state(state, 6)


def test_curves_mark_the_epoch_whose_model_is_kept():
    from classify.plots import best_epoch

    rows = [
        {"epoch": 1, "val_accuracy": 0.5},
        {"epoch": 2, "val_accuracy": 0.7},
        {"epoch": 3, "val_accuracy": 0.7},
        {"epoch": 4, "val_accuracy": 0.6},
    ]
    assert best_epoch(rows) == 2 and best_epoch([]) is None  # ties: the first, as training keeps it


def test_a_resumed_run_removes_the_half_written_models_a_kill_left(tiny_tree, tmp_path):
    """kill -9 while an epoch's model was being saved left `.last.keras.XXXXXXXX.keras` (or `.model.keras...`, as
    large as the model: hundreds of MB for ConvNeXt-Base) in the run folder, and every resume kept it. The resumed
    run now removes such leftovers (and the half-written history, state, ... temp files); files of the user's
    stay."""
    from classify.train import read_history, train

    kw = dict(batch_size=8, image_size=SIZE, seed=5, progress=False, evaluate=False, log=lambda s: None)
    run = tmp_path / "killed"
    train(tiny_tree, "custom_cnn", run, epochs=1, **kw)
    half = (run / "last.keras").read_bytes()[:4096]
    left = [run / ".last.keras.0x_k2m9q.keras", run / ".model.keras.p3j8w_ab.keras", run / ".history.csv.5rt2kq0m.tmp"]
    for p in left:
        p.write_bytes(half)
    mine = run / "notes.keras"
    mine.write_bytes(b"mine")
    train(tiny_tree, "custom_cnn", run, epochs=2, **kw)
    assert [r["epoch"] for r in read_history(run)] == [1, 2]
    assert not any(p.exists() for p in left) and mine.read_bytes() == b"mine"
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == [".naturalize-output.json"]


@pytest.mark.slow
def test_a_torch_training_killed_mid_run_resumes_to_the_uninterrupted_history(tiny_tree, tmp_path):
    """Under KERAS_BACKEND=torch, kill -9 once epoch 1 is written (epoch 2 under way), then the same command: the
    history and the weights equal those of an uninterrupted torch run (the resume promise was tested under
    TensorFlow only)."""
    import signal
    import subprocess
    import sys
    import time

    pytest.importorskip("torch")
    from classify.runs import load_model
    from classify.train import read_history

    def cmd(out: Path) -> list[str]:
        args = ["--dataset", tiny_tree, "--model", "custom_cnn", "--epochs", 3, "--batch-size", 4, "--seed", 2]
        main = "from classify.cli import main; main()"
        return [sys.executable, "-c", main, "train", *map(str, args), "--image-size", str(SIZE), "--no-evaluate",
                "--out", str(out)]  # fmt: skip

    env = {**os.environ, "KERAS_BACKEND": "torch", "TF_CPP_MIN_LOG_LEVEL": "3"}
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    proc = subprocess.Popen(cmd(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and len(read_history(killed)) < 1:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(read_history(killed)) == 1, "the run was not killed after its first epoch"
    for out in (killed, straight):
        r = subprocess.run(cmd(out), env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
    cols = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")
    resumed, whole = (read_history(r) for r in (killed, straight))
    assert [[r[c] for c in cols] for r in resumed] == [[r[c] for c in cols] for r in whole]
    assert [r["epoch"] for r in resumed] == [1, 2, 3]
    a, b = (load_model(r / "last.keras") for r in (killed, straight))
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
