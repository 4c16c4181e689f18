"""One Markdown table across runs, like the paper's Tables 4, 5 and 11, with what tells the runs apart (dataset,
model, weights, mode, Keras backend, test set, image size, epochs) beside the scores, and a note under it when the
runs' test scores come from different test images."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from classify import runs
from naturalize.fsio import read_object
from naturalize.outputs import read_record

COLUMNS = ("run", "dataset", "model", "weights", "mode", "backend", "test set", "size", "epochs")
#: Scores in %, named with their unit and split (the table alone must say what a number is: a bare "precision"
#: did not say it was the test split's macro average, nor that 37.17 meant %).
SCORES = ("train acc %", "val acc %", "test acc %", "test macro-P %", "test macro-R %", "test macro-F1 %")


def dataset_cell(config: dict) -> str:
    """The run's dataset: its folder name, with the recipe (when it differs) and the protocol of a Naturalize
    build (its dataset.json, saved in config.json): `2k-pbc (clean)`, `mine (1k-pbc, paper)`, `my-cells`."""
    name = config.get("dataset_name") or Path(config["dataset"]).name
    meta = config.get("dataset_meta") or {}
    tags = [t for t in (meta.get("recipe"), meta.get("protocol")) if t and t != name]
    return f"{name} ({', '.join(tags)})" if tags else name


def weights_cell(config: dict) -> str:
    """imagenet, none, or the weights file's name (config.json keeps its absolute path)."""
    w = str(config.get("weights", "-"))
    return w if w in ("imagenet", "none", "-") else Path(w).name


def epochs_cell(run: Path, config: dict) -> str:
    """Finished epochs (state.json); `3 of 10` for a run stopped before its --epochs."""
    state = read_object(run / runs.STATE, runs.RUN_FILE_FIX) if (run / runs.STATE).is_file() else {}
    done, wanted = state.get("epoch"), config.get("epochs")
    if done is None:
        return str(wanted)
    return str(done) if wanted is None or done >= wanted else f"{done} of {wanted}"


def run_scores(run: str | os.PathLike, progress: bool = False) -> dict:
    """A run's describing cells (COLUMNS) and its train/val/test reports (evaluating splits not evaluated yet, whose
    report.json is damaged, or evaluated with an earlier model.keras: a resumed or continued run may have kept a new
    best model since; or by a version that did not name the scored images)."""
    from classify.evaluate import evaluate_run

    run, config, _ = runs.open_run(run)
    scores = {
        "run": run.name,
        "dataset": dataset_cell(config),
        "model": config["model"],
        "weights": weights_cell(config),
        "mode": config["mode"],
        "backend": config.get("backend", "-"),
        "size": config["image_size"],
        "epochs": epochs_cell(run, config),
    }
    digest = runs.model_digest(run)
    for split in ("train", "val", "test"):
        path = run / "eval" / split / "report.json"
        rep = read_record(path)  # None when missing or damaged: evaluated (again)
        if rep is None or rep.get("model_sha256") != digest or "images_sha256" not in rep:
            rep = evaluate_run(run, split, progress=progress) if config.get("counts", {}).get(split) else None
        scores[split] = rep
    scores["test set"] = scores["test"]["images_sha256"][:8] if scores["test"] else "-"
    return scores


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def _cell(v: object) -> str:
    return str(v).replace("|", "\\|")  # a | in a folder name would split the Markdown cell


def test_set_note(scores: Sequence[dict]) -> str:
    """'' when every run with a test report was scored on one test set (same images, same labels); else a note
    naming which runs share which test set, since their test scores then differ by data, not only by model."""
    groups: dict[str, list[str]] = {}
    for s in scores:
        if s["test"]:
            groups.setdefault(s["test set"], []).append(s["run"])
    if len(groups) < 2:
        return ""
    parts = "; ".join(f"{key}: {', '.join(names)}" for key, names in groups.items())
    return (
        f"\nnote: these runs were tested on {len(groups)} different test sets ({parts}); their test scores "
        "are not measured on the same images (the column test set names the images and labels scored).\n"
    )


def run_names(run_dirs: Sequence[str | os.PathLike]) -> list[str]:
    """The `run` cell of each run: its folder's name, or, where two runs share that name (`exp1/run`,
    `exp2/run`), the path as given, so no two rows read alike."""
    names = [Path(r).name for r in run_dirs]
    return [n if names.count(n) == 1 else Path(r).as_posix() for n, r in zip(names, run_dirs)]


def table(run_dirs: Sequence[str | os.PathLike], progress: bool = False) -> str:
    """Markdown: COLUMNS, then train/val/test accuracy and test macro precision/recall/F1 (in %), then
    `test_set_note`."""
    lines = [
        "| " + " | ".join(COLUMNS + SCORES) + " |",
        "|" + "---|" * (len(COLUMNS) - 2) + "---:|" * (2 + len(SCORES)),
    ]
    scores = [{**run_scores(r, progress), "run": name} for r, name in zip(run_dirs, run_names(run_dirs))]
    for s in scores:
        acc = [_pct(s[k]["accuracy"] if s[k] else None) for k in ("train", "val", "test")]
        macro = (s["test"] or {}).get("report", {}).get("macro avg", {})
        prf = [_pct(macro.get(k)) for k in ("precision", "recall", "f1-score")]
        lines.append("| " + " | ".join([_cell(s[c]) for c in COLUMNS] + acc + prf) + " |")
    return "\n".join(lines) + "\n" + test_set_note(scores)
