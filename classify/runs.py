"""The run directory: file names, reading a run back, atomic model saving.

RUN/
  config.json     resolved training config (dataset root, model, mode, weights, sizes, seed, backend, counts)
  classes.json    class codes in label order
  split.csv       path,class,split of every image used (the saved split; for a plain tree it was made here)
  model.keras     best model by validation accuracy
  last.keras      checkpoint of the last finished epoch (with optimizer state), for resuming
  state.json      {"epoch": finished epochs, "best_epoch", "best_val_accuracy", "done", "steps", "previous"}
  history.csv     per epoch: loss, accuracy, val_loss, val_accuracy, seconds, train images/s (the whole training
                  part) and steady images/s (after the epoch's first batch, which holds the graph build)
  curves.png      accuracy and loss curves (train and val)
  eval/<split>/   report.txt, report.json, predictions.csv, confusion.png (see classify.evaluate)
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path

from naturalize.fsio import (
    UserError,
    atomic_path,
    file_digests,
    read_json,
    read_object,
    remove_atomic_temps,
    temp_target,
)
from naturalize.outputs import MARKER, check_disjoint, claim, overlap, write_marker

CONFIG, CLASSES_FILE, MODEL, LAST, STATE, HISTORY, CURVES, SPLIT = (
    "config.json",
    "classes.json",
    "model.keras",
    "last.keras",
    "state.json",
    "history.csv",
    "curves.png",
    "split.csv",
)
RUN_KIND = "classify-run"  # the output marker's kind of a run directory (naturalize.outputs)
RUN_FILES = (CONFIG, CLASSES_FILE, MODEL, LAST, STATE, HISTORY, CURVES, SPLIT, "eval", "explain")
_TOP_FILES = (CONFIG, CLASSES_FILE, MODEL, LAST, STATE, HISTORY, CURVES, SPLIT, MARKER)


def written_by_train(rel: str) -> bool:
    """Whether `rel`, a file's path inside a run directory ('state.json'), is one classify train writes there: a
    run file, the marker, or the temporary file of one (what remove_temps removes). A run's eval/ and explain/ hold
    evaluate's and explain's outputs: classify.evaluate.written_by_evaluate, classify.scorecam.written_by_explain."""
    return rel in _TOP_FILES or temp_target(rel) in _TOP_FILES or temp_target(rel, ".keras") in (MODEL, LAST)


#: What evaluate, predict, explain and compare read from a run's config.json, with its type.
CONFIG_KEYS = {"dataset": str, "model": str, "mode": str, "image_size": int, "seed": int}


def claim_outputs(out: Path, run: Path, inputs, kind: str, names) -> None:
    """Before any work: a folder output of evaluate/explain never overlaps an input (the run may hold it, as
    its default eval/ and explain/ folders); outside the run it must be new, empty or an earlier output of the
    same kind, and gets the marker listing `names`."""
    check_disjoint(out, inputs, owners=[run])
    if overlap(out, run) != "is inside":
        claim(out, kind)
        write_marker(out, kind, names)


#: The fix named when a run file (config.json, state.json) of a run being resumed or read is damaged (read_object).
RUN_FILE_FIX = "restore it, or train into a new --out"


def open_run(run: str | os.PathLike) -> tuple[Path, dict, list[str]]:
    """A run directory -> (path, config, classes); UserError when it is not a finished-enough run."""
    run = Path(run)
    missing = [f for f in (CONFIG, CLASSES_FILE, MODEL) if not (run / f).is_file()]
    if missing:
        raise UserError(
            f"{run} is not a classify run directory (missing {', '.join(missing)}); "
            f"pass the --out directory of `classify train`"
        )
    fix = "restore the run's files or retrain it with `classify train`"
    config = read_object(run / CONFIG, fix)
    bad = [k for k, kind in CONFIG_KEYS.items() if not isinstance(config.get(k), kind)]
    if bad or config["image_size"] < 1:
        what = f"lacks a valid {', '.join(bad)}" if bad else "has an image_size below 1"
        raise UserError(f"{run / CONFIG} {what}; {fix}")
    classes = read_json(run / CLASSES_FILE, f"{run / CLASSES_FILE} is damaged (not JSON); {fix}")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise UserError(f"{run / CLASSES_FILE} is not a list of class codes; {fix}")
    return run, config, classes


def model_digest(run: Path) -> str:
    """sha256 of RUN/model.keras: names the model an evaluation scored (report.json's `model_sha256`), so a report
    of an earlier best model (before a resumed or continued run replaced it) is never taken for the current one."""
    return file_digests(Path(run) / MODEL, ("sha256",))[0]


def load_model(path: str | os.PathLike, compile: bool = False):
    """Load a .keras model saved by classify (registers the custom layers first)."""
    import keras

    import classify.layers  # noqa: F401  (registers custom layers)

    try:
        model = keras.saving.load_model(str(path), compile=False)
        _refreeze(model)
        if compile:
            _compile_as_saved(model, Path(path))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:  # cut short, damaged, or not a .keras file
        raise UserError(
            f"{path} cannot be read as a Keras model ({type(e).__name__}); restore it or retrain the run"
        ) from None
    return model


def _compile_as_saved(model, path: Path) -> None:
    """Compile a model loaded uncompiled (and refrozen) from .keras file `path` as it was saved, then read its weights
    and optimizer state from that file. Loading compiled built the optimizer before `_refreeze`: for a transfer ViT,
    for the 198 attention variables Keras leaves trainable, against the file's 6 (Keras then skipped them all)."""
    import json

    with zipfile.ZipFile(path) as archive:
        compile_config = json.loads(archive.read("config.json")).get("compile_config")
    if compile_config is None:  # saved uncompiled
        return
    model.compile_from_config(compile_config)  # builds the optimizer for the refrozen model's trainable variables
    model.load_weights(str(path))  # a compiled model's .keras weights include its optimizer's variables


def _refreeze(model) -> None:
    """Re-apply `trainable=False` to frozen nested models: Keras leaves sublayers that are built while loading
    (e.g. MultiHeadAttention's projections inside a frozen ViT backbone) trainable."""
    import keras

    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.Model):
            if not layer.trainable:
                for sub in layer._flatten_layers(include_self=True):
                    sub.trainable = False
            else:
                _refreeze(layer)


def save_model(model, path: Path) -> None:
    """model.save to a temp .keras file beside `path`, made the same bytes for the same model (same_bytes_keras),
    then rename over it."""
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(str(tmp))
        same_bytes_keras(Path(tmp))


#: The ids Keras writes into a .keras file's config.json: Python object ids (id()), another number every run.
_SHARED_ID = re.compile(rb'"shared_object_id": (\d+)')


def same_bytes_keras(path: Path) -> None:
    """Rewrite the .keras archive `path` in place so the same model gives the same bytes: Keras stamps the save time
    (metadata.json `date_saved`, the weights' zip entry time) and numbers shared objects by their Python id() in
    config.json; the time is dropped (entries dated 1980-01-01) and the ids renumbered 1, 2, ... in order of first
    appearance (the same objects stay shared). Weights and the rest of the config are copied as they are."""
    with zipfile.ZipFile(path) as z:
        entries = [(info, z.read(info)) for info in z.infolist()]
    ids: dict[bytes, bytes] = {}

    def renumber(m: re.Match) -> bytes:
        return b'"shared_object_id": ' + ids.setdefault(m.group(1), str(len(ids) + 1).encode())

    with zipfile.ZipFile(path, "w") as z:
        for info, data in entries:
            if info.filename == "metadata.json":
                meta = json.loads(data)
                meta.pop("date_saved", None)
                data = json.dumps(meta).encode()
            elif info.filename == "config.json":
                data = _SHARED_ID.sub(renumber, data)
            fixed = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            fixed.compress_type, fixed.external_attr, fixed.create_system = (
                info.compress_type,
                info.external_attr,
                info.create_system,
            )
            z.writestr(fixed, data)


def remove_temps(run: Path) -> list[Path]:
    """Remove the half-written files a killed `classify train` left in RUN (`.last.keras.XXXXXXXX.keras`,
    `.history.csv.XXXXXXXX.tmp`, ...): a resumed run never reads them, and a model's is as large as the model.
    Returns the removed paths."""
    models = remove_atomic_temps(run, (MODEL, LAST), suffix=".keras")
    return models + remove_atomic_temps(run, (CONFIG, CLASSES_FILE, STATE, HISTORY, CURVES, SPLIT, MARKER))
