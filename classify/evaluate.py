"""Evaluate a run on a dataset split: accuracy, loss, scikit-learn classification report, confusion matrix.

Scores a split (train, val, test) of the run's dataset or of another one with the same classes or some of them
(the report covers the present classes and names the absent ones), or all of another one (an external test set;
the default for a plain class tree). Writes OUT (default RUN/eval/<split>, or
RUN/eval/<dataset>-<split> for another dataset):
  report.txt       classification_report text (4 digits) preceded by accuracy, loss and a Naturalize dataset's protocol
  report.json      {"accuracy", "loss", "n", "split", "dataset", "protocol", "classes", "absent": classes without
                   images, "predicted_absent": images predicted as one of them, "report": sklearn dict,
                   "confusion": counts, "model_sha256": the scored model.keras's sha256, "images_sha256": the
                   scored images' (Dataset.images_digest: same images and labels, same digest)}; "protocol": the
                   dataset's (dataset.json: clean, paper), null for other trees
  predictions.csv  path,true,pred,prob_<CLASS>...
  confusion.png    counts and row-normalised confusion matrices
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from classify import runs
from classify.datasets import (
    WHOLE,
    as_run_classes,
    check_classes,
    layout_of,
    load_dataset,
    resolve_root,
    with_saved_split,
)
from naturalize.classes import SPLITS
from naturalize.fsio import UserError, temp_target, write_json, write_text
from naturalize.outputs import dropped_if_unused
from naturalize.protocols import PROTOCOLS

OUTPUTS = ("report.txt", "report.json", "predictions.csv", "confusion.png")


def written_by_evaluate(name: str) -> bool:
    """Whether a file named `name` in an evaluation's folder is one evaluate_run writes there (OUTPUTS), or the
    temporary file of one."""
    return (temp_target(name) or name) in OUTPUTS


def protocol_line(meta: dict) -> str:
    """What a Naturalize dataset's protocol (its dataset.json `meta`) means for the scores, as one line; '' when
    the dataset has none (a plain tree)."""
    protocol = PROTOCOLS.get(str(meta.get("protocol")))
    return f"protocol {protocol.name}: {protocol.score_note}\n" if protocol else ""


def predict_probs(model, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Class probabilities for uint8/float images (N, S, S, 3) -> float (N, K)."""
    from classify.batches import make_batches

    return np.asarray(model.predict(make_batches(x, None, batch_size), verbose=0), np.float64)


def metrics(y_true: Sequence[int], probs: np.ndarray, classes: Sequence[str]) -> dict:
    """Accuracy, cross-entropy loss, sklearn report (text and dict) and confusion counts of predictions.

    The report covers the classes present in `y_true` (its macro and weighted averages are over those: sklearn's
    `labels=`), so a test set holding some of the run's classes is not marked down for the others; "absent" names
    the others. The confusion counts are (K, K) over all `classes` (rows of absent classes are zero), so
    predictions that fall in an absent class are counted in its column."""
    from sklearn.metrics import accuracy_score, classification_report, confusion_matrix

    truth = np.asarray(y_true)
    y_pred = probs.argmax(axis=1)
    present = sorted({int(t) for t in truth})
    p_true = np.clip(probs[np.arange(len(truth)), truth], 1e-7, 1.0)
    kw = dict(labels=present, target_names=[classes[k] for k in present], zero_division=0)
    return {
        "absent": [c for k, c in enumerate(classes) if k not in present],
        "predicted_absent": int(np.sum(~np.isin(y_pred, present))),
        "accuracy": float(accuracy_score(truth, y_pred)),
        "loss": float(-np.mean(np.log(p_true))),
        "n": int(len(truth)),
        "report_text": classification_report(truth, y_pred, digits=4, **kw),
        "report": classification_report(truth, y_pred, output_dict=True, **kw),
        "confusion": confusion_matrix(truth, y_pred, labels=list(range(len(classes)))).tolist(),
        "y_pred": y_pred,
    }


def absent_line(m: dict) -> str:
    """What metrics' "absent" classes mean for the report, as one line ('' when every class is present)."""
    if not m["absent"]:
        return ""
    k = len(m["confusion"])
    return (
        f"absent classes (no images here; the report and its macro/weighted averages cover the other "
        f"{k - len(m['absent'])}): {', '.join(m['absent'])}; {m['predicted_absent']} image(s) predicted as one of "
        f"them (counted in their columns of the confusion matrix)\n"
    )


def pick_split(split: str | None, own: bool, layout: str, run: Path) -> str:
    """The split to score: `split` as given, else test, or all for another dataset that is a plain class tree (it
    has no test split of its own: an external test set). UserError for all on the run's own dataset, whose
    train split the model has learned."""
    if split is None:
        return WHOLE if not own and layout == "plain" else "test"
    if split == WHOLE and own:
        raise UserError(
            f"--split {WHOLE} would score {run} on its own training images too; pick --split test (or train, val), "
            f"or pass --dataset for an external test set"
        )
    if split not in (*SPLITS, WHOLE):
        raise UserError(f"--split {split!r} is not one of {', '.join((*SPLITS, WHOLE))}")
    return split


def evaluate_run(
    run: str | os.PathLike,
    split: str | None = "test",
    dataset: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    batch_size: int | None = None,
    progress: bool = True,
    warn: Callable[[str], None] | None = None,
) -> dict:
    """Evaluate RUN's best model on `split` of its dataset (or `dataset`; None picks as `pick_split` says, "all" is
    every image of another dataset); writes the files above and returns report.json's content plus "out" (the
    folder written). Class-folder entries that are not read are named through `warn`."""
    from classify.images import cached_array
    from classify.plots import plot_confusion

    run, config, classes = runs.open_run(run)
    root = resolve_root(dataset if dataset is not None else config["dataset"])
    own = root == Path(config["dataset"])
    split = pick_split(split, own, layout_of(root), run)
    data = load_dataset(root, config["seed"], whole=split == WHOLE, warn=warn)
    if own:
        data = with_saved_split(data, run / runs.SPLIT)  # a plain tree: the split the run was trained on
        check_classes(classes, data)
    else:
        data = as_run_classes(classes, data)  # an external set may hold only some of the run's classes
    paths = data.paths(split)
    y = data.labels(split)
    size = int(config["image_size"])
    if out is None:
        out = run / "eval" / (split if own else f"{data.name}-{split}")
    out = Path(out)
    with dropped_if_unused(out):  # a failure before the first file leaves no folder holding only the marker
        runs.claim_outputs(out, run, [("the dataset", data.root)], "classify-eval", OUTPUTS)
        x = cached_array(paths, size, progress=progress, desc=f"decode {split}")
        digest = runs.model_digest(run)
        model = runs.load_model(run / runs.MODEL)
        probs = predict_probs(model, x, batch_size or int(config.get("batch_size", 32)))
        m = metrics(y, probs, classes)
        header = (
            f"run {run.resolve()}  model {config['model']}  dataset {data.root}  split {split}  n {m['n']}\n"
            f"accuracy {m['accuracy']:.4f}  loss {m['loss']:.4f}\n" + protocol_line(data.meta) + absent_line(m) + "\n"
        )
        write_text(out / "report.txt", header + m["report_text"])
        result = {
            "run": str(run.resolve()),
            "dataset": str(data.root),
            "split": split,
            "protocol": data.meta.get("protocol"),
            "classes": list(classes),
            "accuracy": m["accuracy"],
            "loss": m["loss"],
            "n": m["n"],
            "absent": m["absent"],
            "predicted_absent": m["predicted_absent"],
            "report": m["report"],
            "confusion": m["confusion"],
            "model_sha256": digest,
            "images_sha256": data.images_digest(split),
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
            {"run": str(run.resolve()), "dataset": str(data.root), "split": split, "protocol": result["protocol"]},
            rows=[c for c in classes if c not in m["absent"]],
        )
    return {**result, "out": str(out)}
