"""Evaluate a run on a dataset split: accuracy, loss, scikit-learn classification report, confusion matrix.

Writes OUT (default RUN/eval/<split>, or RUN/eval/<dataset>-<split> for another dataset):
  report.txt       classification_report text (4 digits) preceded by accuracy and loss
  report.json      {"accuracy", "loss", "n", "split", "dataset", "classes", "report": sklearn dict, "confusion": counts}
  predictions.csv  path,true,pred,prob_<CLASS>...
  confusion.png    counts and row-normalised confusion matrices
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from classify import runs
from classify.datasets import check_classes, load_dataset, with_saved_split
from naturalize.fsio import write_json, write_text
from naturalize.outputs import dropped_if_unused

OUTPUTS = ("report.txt", "report.json", "predictions.csv", "confusion.png")


def predict_probs(model, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Class probabilities for uint8/float images (N, S, S, 3) -> float (N, K)."""
    from classify.batches import make_batches

    return np.asarray(model.predict(make_batches(x, None, batch_size), verbose=0), np.float64)


def metrics(y_true: Sequence[int], probs: np.ndarray, classes: Sequence[str]) -> dict:
    """Accuracy, cross-entropy loss, sklearn report (text and dict) and confusion counts of predictions."""
    from sklearn.metrics import accuracy_score, classification_report, confusion_matrix

    truth = np.asarray(y_true)
    y_pred = probs.argmax(axis=1)
    labels = list(range(len(classes)))
    p_true = np.clip(probs[np.arange(len(truth)), truth], 1e-7, 1.0)
    kw = dict(labels=labels, target_names=list(classes), zero_division=0)
    return {
        "accuracy": float(accuracy_score(truth, y_pred)),
        "loss": float(-np.mean(np.log(p_true))),
        "n": int(len(truth)),
        "report_text": classification_report(truth, y_pred, digits=4, **kw),
        "report": classification_report(truth, y_pred, output_dict=True, **kw),
        "confusion": confusion_matrix(truth, y_pred, labels=labels).tolist(),
        "y_pred": y_pred,
    }


def evaluate_run(
    run: str | os.PathLike,
    split: str = "test",
    dataset: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    batch_size: int | None = None,
    progress: bool = True,
) -> dict:
    """Evaluate RUN's best model on `split` of its dataset (or `dataset`); writes the files above and returns
    report.json's content plus "out" (the folder written)."""
    from classify.images import cached_array
    from classify.plots import plot_confusion

    run, config, classes = runs.open_run(run)
    data = load_dataset(dataset if dataset is not None else config["dataset"], config["seed"])
    if Path(data.root) == Path(config["dataset"]):
        data = with_saved_split(data, run / runs.SPLIT)  # a plain tree: the split the run was trained on
    check_classes(classes, data)
    paths = data.paths(split)
    y = data.labels(split)
    size = int(config["image_size"])
    if out is None:
        same = dataset is None or Path(data.root) == Path(config["dataset"])
        out = run / "eval" / (split if same else f"{data.name}-{split}")
    out = Path(out)
    with dropped_if_unused(out):  # a failure before the first file leaves no folder holding only the marker
        runs.claim_outputs(out, run, [("the dataset", data.root)], "classify-eval", OUTPUTS)
        x = cached_array(paths, size, progress=progress, desc=f"decode {split}")
        model = runs.load_model(run / runs.MODEL)
        probs = predict_probs(model, x, batch_size or int(config.get("batch_size", 32)))
        m = metrics(y, probs, classes)
        header = (
            f"run {run}  model {config['model']}  dataset {data.root}  split {split}  n {m['n']}\n"
            f"accuracy {m['accuracy']:.4f}  loss {m['loss']:.4f}\n\n"
        )
        write_text(out / "report.txt", header + m["report_text"])
        result = {
            "run": str(run.resolve()),
            "dataset": str(data.root),
            "split": split,
            "classes": list(classes),
            "accuracy": m["accuracy"],
            "loss": m["loss"],
            "n": m["n"],
            "report": m["report"],
            "confusion": m["confusion"],
        }
        write_json(out / "report.json", result)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["path", "true", "pred", *(f"prob_{c}" for c in classes)])
        for p, t, pr, row in zip(paths, y, m["y_pred"], probs):
            w.writerow([str(p), classes[t], classes[pr], *(f"{v:.6f}" for v in row)])
        write_text(out / "predictions.csv", buf.getvalue())
        plot_confusion(
            np.asarray(m["confusion"]),
            classes,
            out / "confusion.png",
            f"{config['model']} on {data.name}/{split}: accuracy {m['accuracy']:.4f}, "
            f"macro-F1 {m['report']['macro avg']['f1-score']:.4f}",
            {"run": str(run.resolve()), "dataset": str(data.root), "split": split},
        )
    return {**result, "out": str(out)}
