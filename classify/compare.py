"""One Markdown table across runs, like the paper's Tables 4, 5 and 11."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from classify import runs


def run_scores(run: str | os.PathLike, progress: bool = False) -> dict:
    """Train/val/test accuracy and test macro P/R/F1 of a run (evaluating splits not evaluated yet)."""
    from classify.evaluate import evaluate_run

    run, config, _ = runs.open_run(run)
    scores = {"run": run.name, "model": config["model"], "mode": config["mode"], "size": config["image_size"]}
    for split in ("train", "val", "test"):
        path = run / "eval" / split / "report.json"
        if path.is_file():
            rep = json.loads(path.read_text())
        elif config.get("counts", {}).get(split):
            rep = evaluate_run(run, split, progress=progress)
        else:
            rep = None
        scores[split] = rep
    return scores


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def table(run_dirs: Sequence[str | os.PathLike], progress: bool = False) -> str:
    """Markdown: run, model, mode, size, train/val/test accuracy and test macro precision/recall/F1 (in %)."""
    lines = [
        "| run | model | mode | size | train acc | val acc | test acc | precision | recall | F1 |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in run_dirs:
        s = run_scores(r, progress)
        acc = {k: (s[k]["accuracy"] if s[k] else None) for k in ("train", "val", "test")}
        macro = (s["test"] or {}).get("report", {}).get("macro avg", {})
        lines.append(
            f"| {s['run']} | {s['model']} | {s['mode']} | {s['size']} | {_pct(acc['train'])} | "
            f"{_pct(acc['val'])} | {_pct(acc['test'])} | {_pct(macro.get('precision'))} | "
            f"{_pct(macro.get('recall'))} | {_pct(macro.get('f1-score'))} |"
        )
    return "\n".join(lines) + "\n"
