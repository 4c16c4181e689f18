"""Train a registry model on a dataset tree into a run directory, resuming after an interruption.

Each finished epoch atomically writes history.csv, model.keras when validation accuracy improved, curves.png,
state.json (keeping the epoch before as "previous") and last last.keras (with optimizer state), so a kill between
any two of them leaves a run that resumes exactly: last.keras's optimizer step count names the state entry that
describes it (`resume_state`). Rerunning the same command resumes from the last finished epoch; a larger
--epochs continues training.
"""

from __future__ import annotations

import csv
import io
import os
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from classify import runs
from classify.datasets import Dataset, load_dataset, with_saved_split
from classify.images import cached_array
from classify.models import check_mode, check_name, create_model
from naturalize.codeversion import code_digest
from naturalize.fsio import UserError, read_object, write_json, write_text
from naturalize.outputs import check_disjoint, claim, dropped_if_unused, write_marker

#: config keys that must match to resume a run (epochs may grow).
RESUME_KEYS = ("dataset", "model", "mode", "weights", "batch_size", "lr", "image_size", "seed", "classes", "code")
#: The modules whose code shapes a run's epochs (their digest is config.json's `code`: a run trained by other code is
#: not resumed, which would mix epochs of two versions).
TRAIN_CODE = (
    "classify.train",
    "classify.models",
    "classify.layers",
    "classify.batches",
    "classify.images",
    "classify.datasets",
    "naturalize.decode",
)
HISTORY_FIELDS = (
    "epoch",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "seconds",
    "train_images_per_s",
    "steady_images_per_s",
)


def resolve_config(
    data: Dataset,
    model: str,
    mode: str,
    weights: str,
    epochs: int,
    batch_size: int,
    lr: float,
    image_size: int,
    seed: int,
) -> dict:
    """The resolved training config saved as config.json."""
    import keras

    w = weights if weights in ("imagenet", "none") else str(Path(weights).resolve())
    return {
        "dataset": str(data.root),
        "dataset_name": data.name,
        "layout": data.layout,
        "dataset_meta": data.meta,
        "model": model,
        "mode": mode,
        "weights": w,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "image_size": image_size,
        "seed": seed,
        "classes": list(data.classes),
        "counts": {s: len(rows) for s, rows in data.items.items()},
        "augmentation": "random horizontal flip, vertical flip, rotation by k*90 degrees",
        "optimizer": "adam",
        "loss": "sparse_categorical_crossentropy",
        "backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "code": code_digest(*TRAIN_CODE),
    }


def _history_text(rows: Sequence[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, HISTORY_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:  # a run from before steady_images_per_s was kept resumes with nan there
        row = {k: r.get(k, float("nan")) for k in HISTORY_FIELDS}
        w.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


def read_history(run: Path) -> list[dict]:
    path = run / runs.HISTORY
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: (int(v) if k == "epoch" else float(v)) for k, v in r.items()} for r in csv.DictReader(f)]


def _check_resumable(out: Path, config: dict) -> dict | None:
    """The saved state when `out` holds a compatible run; UserError when it holds a different one, or anything
    but a classify run (the folder must be new, empty or carry the run marker)."""
    if claim(out, runs.RUN_KIND) == "new" or not (out / runs.CONFIG).is_file():
        return None
    old = read_object(out / runs.CONFIG, runs.RUN_FILE_FIX)
    diff = [k for k in RESUME_KEYS if old.get(k) != config.get(k)]
    if "code" in diff and len(diff) == 1:
        raise UserError(
            f"--out {out} holds a run trained by another version of classify's training code ({runs.CONFIG} `code`): "
            f"resuming it would mix epochs of two versions; train into a new --out"
        )
    if diff:
        k = diff[0]
        raise UserError(
            f"--out {out} holds a different run ({k}: {old.get(k)!r} there, {config.get(k)!r} now); "
            f"pass another --out or the same options to resume it"
        )
    if (out / runs.STATE).is_file() and (out / runs.LAST).is_file():
        _check_backend(out, old.get("backend"), config["backend"])
        return read_object(out / runs.STATE, runs.RUN_FILE_FIX)
    return None


def _check_backend(out: Path, was: str | None, now: str) -> None:
    """UserError when run `out`, trained under backend `was` (its config.json), would resume under `now`: its
    last.keras holds that backend's optimizer (loading a torch one under TensorFlow crashes the process) and the
    epochs would mix backends. Checked before anything is loaded. Inference on a finished run works either way."""
    if was is not None and was != now:
        raise UserError(
            f"--out {out} is a run trained under the {was} backend ({runs.CONFIG}) and cannot resume under {now}; "
            f"rerun with KERAS_BACKEND={was}, or train into a new --out"
        )


def optimizer_steps(model) -> int:
    """How many optimizer steps a compiled model has taken (saved in a .keras file with the optimizer)."""
    from keras import ops

    return int(ops.convert_to_numpy(model.optimizer.iterations))


def resume_state(state: dict, steps: int) -> dict:
    """The entry of state.json that describes last.keras, whose optimizer has taken `steps` steps: the file's own
    or, when a kill fell after state.json was written and before last.keras was replaced, the epoch before it
    (kept as "previous"). A state without step counts (an older run) is taken as it is."""
    for entry in (state, state.get("previous")):
        if entry is not None and entry.get("steps", steps) == steps:
            return {k: v for k, v in entry.items() if k != "previous"}
    raise UserError(
        f"{runs.LAST} has taken {steps} optimizer steps but {runs.STATE} describes {state.get('steps')} (epoch "
        f"{state.get('epoch')}); the run's files disagree, so it cannot resume exactly: train into a new --out"
    )


def reseed(model, seed: int, epoch: int) -> None:
    """Make epoch `epoch`'s random streams depend only on (seed, epoch): the global seeds (Python, NumPy, the
    backend's where Keras draws from it) and the state of every layer's seed generator (dropout...). With the
    weights and the optimizer state restored from last.keras, a resumed run then gives the same epochs as an
    uninterrupted one.

    Under TensorFlow the backend's global seed is left alone: Keras's TensorFlow random ops are stateless, fed by
    the seed generators' states set here, and resetting that seed makes TensorFlow re-trace the train function at
    every epoch (~10 s an epoch for EfficientNetV2-B0 on a CPU). Under torch, unseeded dropout draws from torch's
    global generator, so keras.utils.set_random_seed seeds it."""
    import keras

    epoch_seed = int(np.random.default_rng([seed, epoch, 2]).integers(2**31 - 1))
    if keras.backend.backend() == "tensorflow":
        random.seed(epoch_seed)
        np.random.seed(epoch_seed)
    else:
        keras.utils.set_random_seed(epoch_seed)
    for i, layer in enumerate(model._flatten_layers(include_self=True)):
        for j, gen in enumerate(getattr(layer, "_seed_generators", ())):
            start = int(np.random.default_rng([seed, epoch, 3, i, j]).integers(2**31 - 1))
            gen.state.assign(np.asarray([start, 0], dtype=keras.backend.standardize_dtype(gen.state.dtype)))


def steady_images_per_s(batch_ends: Sequence[float], n_images: int, batch_size: int) -> float:
    """Training images/s of one epoch over its full batches after the first: (images of the 2nd to last full
    batch) / (time from the first batch's end to the last full batch's end). `batch_ends`: perf_counter at each
    batch's end. The first batch holds the graph build / compile of the first epoch (and the loader's start in every
    epoch); a short last batch costs about a full batch's time for fewer images (66 images in batches of 64: its 2
    images in one step read as 2 img/s), so neither counts. nan when there are fewer than two full batches."""
    full = min(len(batch_ends), n_images // max(batch_size, 1))
    if full < 2 or batch_ends[full - 1] <= batch_ends[0]:
        return float("nan")
    return (full - 1) * batch_size / (batch_ends[full - 1] - batch_ends[0])


def rate_text(images_per_s: float) -> str:
    """A training rate for the log: one decimal from 1 img/s up, two significant digits below (a big model on a
    loaded CPU trains at 0.05 img/s, which one decimal would print as 0.0)."""
    return f"{images_per_s:.1f} img/s" if images_per_s >= 1 else f"{images_per_s:.2g} img/s"


def _rates(row: dict) -> str:
    """An epoch's training speed for the log: the steady rate, named as such, and the whole epoch's."""
    whole = rate_text(row["train_images_per_s"])
    steady = row["steady_images_per_s"]
    if steady != steady:  # nan: fewer than two full batches, nothing steady to measure
        return f"{whole} (under two full batches: no steady rate)"
    return f"{rate_text(steady)} steady (full batches after the first), {whole} in all"


def _make_callback(
    out: Path,
    train_batches,
    n_train: int,
    batch_size: int,
    history: list[dict],
    state: dict,
    title: str,
    provenance: dict,
    log,
    seed: int,
):
    import keras

    from classify.plots import plot_history

    class RunCheckpoint(keras.callbacks.Callback):
        """Times the training part of each epoch and writes the run files atomically at its end."""

        def on_epoch_begin(self, epoch, logs=None):
            train_batches.set_epoch(epoch)
            reseed(self.model, seed, epoch)
            self.t0 = time.perf_counter()
            self.t_train = None
            self.batch_ends: list[float] = []

        def on_train_batch_end(self, batch, logs=None):
            self.batch_ends.append(time.perf_counter())

        def on_test_begin(self, logs=None):
            if self.t_train is None:
                self.t_train = time.perf_counter() - self.t0

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            seconds = time.perf_counter() - self.t0
            train_s = self.t_train or seconds
            row = {
                "epoch": epoch + 1,
                "loss": float(logs["loss"]),
                "accuracy": float(logs["accuracy"]),
                "val_loss": float(logs["val_loss"]),
                "val_accuracy": float(logs["val_accuracy"]),
                "seconds": float(seconds),
                "train_images_per_s": float(n_train / train_s),
                "steady_images_per_s": steady_images_per_s(self.batch_ends, n_train, batch_size),
            }
            history.append(row)
            write_text(out / runs.HISTORY, _history_text(history))
            previous = {k: v for k, v in state.items() if k != "previous"}
            improved = row["val_accuracy"] > state.get("best_val_accuracy", -1.0)
            if improved:
                runs.save_model(self.model, out / runs.MODEL)
                state.update(best_epoch=epoch + 1, best_val_accuracy=row["val_accuracy"])
            plot_history(history, out / runs.CURVES, title, provenance)
            state.update(epoch=epoch + 1, done=False, steps=optimizer_steps(self.model), previous=previous)
            write_json(out / runs.STATE, state)
            runs.save_model(self.model, out / runs.LAST)  # last: the epoch counts as finished once this is replaced
            log(
                f"epoch {epoch + 1}: loss {row['loss']:.4f} acc {row['accuracy']:.4f} val_loss {row['val_loss']:.4f} "
                f"val_acc {row['val_accuracy']:.4f} ({seconds:.1f}s; train {_rates(row)})"
                f"{' *best*' if improved else ''}"
            )

    return RunCheckpoint()


def train(
    dataset: str | os.PathLike,
    model: str,
    out: str | os.PathLike | None = None,
    mode: str = "finetune",
    weights: str = "none",
    epochs: int = 10,
    batch_size: int = 32,
    lr: float = 1e-3,
    image_size: int = 224,
    seed: int = 0,
    evaluate: bool = True,
    progress: bool = True,
    callbacks: Sequence = (),
    workers: int = 2,
    log=print,
    warn: Callable[[str], None] | None = None,
) -> Path:
    """Train `model` on `dataset` into run dir `out` (default runs/<dataset>_<model>); returns the run dir.
    Class-folder entries that are not read are named through `warn`."""
    check_name(model)
    check_mode(model, mode, weights)  # before any work: a frozen random backbone is refused
    if epochs < 1 or batch_size < 1 or lr <= 0 or image_size < 8:
        raise UserError("--epochs, --batch-size and --image-size must be positive and --lr > 0")
    data = load_dataset(dataset, seed, warn=warn)
    if "val" not in data.items:
        raise UserError(
            f"dataset {data.root} has no val/ split; training needs train/ and val/ "
            f"(a plain <CLASS>/ tree is split 80/10/10 automatically)"
        )
    for s in ("train", "val"):
        data.split_items(s)  # UserError when empty
    if len(data.classes) < 2:
        raise UserError(
            f"dataset {data.root} has one class ({data.classes[0]}); a classifier needs at least two "
            f"class folders (its accuracy would be 1.0 whatever it learned)"
        )
    out = Path(out) if out is not None else Path("runs") / f"{data.name}_{model}"
    check_disjoint(
        out, [("the dataset", data.root), ("--weights", None if weights in ("imagenet", "none") else weights)]
    )
    claim(out, runs.RUN_KIND)  # a folder that is not a classify run is refused before Keras is even imported
    data = with_saved_split(data, out / runs.SPLIT)  # a resumed plain-tree run keeps the split it started with
    config = resolve_config(data, model, mode, weights, epochs, batch_size, lr, image_size, seed)
    state = _check_resumable(out, config)
    with dropped_if_unused(out):  # a run that fails before its first file leaves no folder holding only the marker
        write_marker(out, runs.RUN_KIND, runs.RUN_FILES)
        runs.remove_temps(out)  # what a killed run left half-written
        _fit(out, data, config, state, evaluate, progress, callbacks, workers, log)
    return out


def _fit(
    out: Path,
    data: Dataset,
    config: dict,
    state: dict | None,
    evaluate: bool,
    progress: bool,
    callbacks: Sequence,
    workers: int,
    log,
) -> None:
    """Train (or resume, from `state`) the run `config` describes into `out`, then evaluate its best model."""
    import keras

    from classify.batches import make_batches

    model, mode, weights, seed = config["model"], config["mode"], config["weights"], config["seed"]
    epochs, batch_size, lr, image_size = config["epochs"], config["batch_size"], config["lr"], config["image_size"]
    keras.utils.set_random_seed(seed)
    x_train = cached_array(data.paths("train"), image_size, workers, progress, "decode train")
    x_val = cached_array(data.paths("val"), image_size, workers, progress, "decode val")
    y_train = np.asarray(data.labels("train"), np.int32)
    y_val = np.asarray(data.labels("val"), np.int32)
    train_batches = make_batches(x_train, y_train, batch_size, augment_data=True, shuffle=True, seed=seed)
    val_batches = make_batches(x_val, y_val, batch_size)

    history: list[dict] = []
    if state is not None:
        net = runs.load_model(out / runs.LAST, compile=True)
        state = resume_state(state, optimizer_steps(net))
        history = read_history(out)[: state["epoch"]]
        log(
            f"resuming {out} after epoch {state['epoch']} (best val_acc {state['best_val_accuracy']:.4f} "
            f"at epoch {state['best_epoch']})"
        )
    else:
        state = {"epoch": 0, "best_epoch": 0, "best_val_accuracy": -1.0, "done": False, "steps": 0}
        net = create_model(model, len(data.classes), weights, mode, image_size)
        net.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    write_json(out / runs.CONFIG, config)
    write_json(out / runs.CLASSES_FILE, list(data.classes))
    write_text(out / runs.SPLIT, data.split_csv())

    shown = Path(weights).name if weights not in ("imagenet", "none") else weights
    title = f"{model} ({mode}, weights {shown}) on {data.name}"
    provenance = {"run": str(out.resolve()), "model": model, "dataset": str(data.root), "seed": seed}
    if state["epoch"] < epochs:
        cb = _make_callback(out, train_batches, len(x_train), batch_size, history, state, title, provenance, log, seed)
        log(
            f"training {model} on {data.name}: {len(x_train)} train / {len(x_val)} val images at {image_size}px, "
            f"{keras.backend.backend()} backend, epochs {state['epoch'] + 1}..{epochs}"
        )
        net.fit(
            train_batches,
            validation_data=val_batches,
            epochs=epochs,
            initial_epoch=state["epoch"],
            callbacks=[cb, *callbacks],
            verbose=1 if progress and os.isatty(1) else 0,
        )
    state["done"] = True
    write_json(out / runs.STATE, state)
    log(f"best val_acc {state['best_val_accuracy']:.4f} at epoch {state['best_epoch']}; model: {out / runs.MODEL}")
    if evaluate:
        from classify.evaluate import evaluate_run

        for split in ("train", "val", "test"):
            if split in data.items and data.items[split]:
                res = evaluate_run(out, split, progress=progress)
                log(f"{split}: accuracy {res['accuracy']:.4f} macro-F1 {res['report']['macro avg']['f1-score']:.4f}")
