"""Predict classes for image files or folders with a run's best model -> CSV rows."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from classify import runs
from classify.datasets import describe_skipped, scan_images
from naturalize.fsio import UserError
from naturalize.paths import hidden_note


def gather_images(inputs: Sequence[str | os.PathLike], warn: Callable[[str], None] | None = None) -> list[Path]:
    """Image files given directly or found (recursively, sorted) in given folders; other files found in the
    folders are named in one line through `warn`, and the hidden files found there (.DS_Store, ._X.jpg, Thumbs.db:
    never read) counted in another, as the other commands do (naturalize.paths.hidden_note). UserError when there
    are no images."""
    found: list[Path] = []
    skipped: list[Path] = []
    hidden: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            images, other, dotted = scan_images(item, recursive=True)
            found += images
            skipped += other
            hidden += dotted
        elif item.is_file():
            found.append(item)
        else:
            raise UserError(f"{item} is neither an image file nor a folder; check the path")
    if not found:
        raise UserError(f"no images (*.jpg, *.png, ...) found in {', '.join(map(str, inputs))}")
    if skipped and warn is not None:
        warn(describe_skipped(skipped))
    if warn is not None and (note := hidden_note(hidden)):
        warn(note)
    return found


def predict(
    run: str | os.PathLike,
    inputs: Sequence[str | os.PathLike],
    batch_size: int = 32,
    progress: bool = True,
    warn: Callable[[str], None] | None = None,
) -> str:
    """CSV text (path,pred,prob,prob_<CLASS>...) for every readable image in `inputs`; unreadable ones are
    skipped and reported, all in one message, through `warn`. UserError when none can be read."""
    from classify.evaluate import predict_probs
    from classify.images import decode_some, describe_bad

    run, config, classes = runs.open_run(run)
    paths = gather_images(inputs, warn)
    x, good, bad = decode_some(paths, int(config["image_size"]), progress=progress)
    if bad and not good:
        raise UserError(describe_bad(bad) + "; none left to predict: pass readable images")
    if bad and warn is not None:
        warn("warning: skipped " + describe_bad(bad))
    probs = predict_probs(runs.load_model(run / runs.MODEL), x, batch_size)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "pred", "prob", *(f"prob_{c}" for c in classes)])
    for i, row in zip(good, probs):
        k = int(np.argmax(row))
        w.writerow([str(paths[i]), classes[k], f"{row[k]:.6f}", *(f"{v:.6f}" for v in row)])
    return buf.getvalue()
