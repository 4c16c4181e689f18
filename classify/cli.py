"""The `classify` command line: thin wrappers over classify.train/evaluate/predict/scorecam/compare.

Keras (and its backend) is imported only inside the commands, so `classify --help` stays fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from naturalize.fsio import UserError, write_text
from naturalize.outputs import check_file_output

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Train, evaluate, predict with and explain Keras blood-cell classifiers on Naturalize datasets.")


@app.callback()
def _root() -> None:
    """Train, evaluate, predict with and explain Keras blood-cell classifiers (KERAS_BACKEND=tensorflow|torch)."""


@app.command()
def train(
    dataset: str = typer.Option(..., "--dataset", help="Dataset name (under ./datasets or $NATURALIZE_DATA) or path."),
    model: str = typer.Option("efficientnetv2b0", "--model", help="Registry model name (see `classify models`)."),
    mode: str = typer.Option("finetune", "--mode", help="finetune (train all) or transfer (frozen backbone)."),
    weights: str = typer.Option("none", "--weights", help="imagenet, none, or PATH to a local weights file."),
    epochs: int = typer.Option(10, "--epochs"),
    batch_size: int = typer.Option(32, "--batch-size"),
    lr: float = typer.Option(1e-3, "--lr", help="Adam learning rate."),
    image_size: int = typer.Option(224, "--image-size", help="Images are resized to SIZE x SIZE."),
    seed: int = typer.Option(0, "--seed"),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default runs/<dataset>_<model>)."),
    evaluate: bool = typer.Option(True, "--evaluate/--no-evaluate", help="Evaluate the best model on every split at the end."),
) -> None:
    """Train a model; the best by val accuracy is kept; rerun the same command to resume."""
    from classify.models import check_name

    check_name(model)
    from classify.train import train as run_train

    run_train(dataset, model, out, mode=mode, weights=weights, epochs=epochs, batch_size=batch_size, lr=lr,
              image_size=image_size, seed=seed, evaluate=evaluate, log=typer.echo)


@app.command()
def evaluate(
    run: Path = typer.Argument(..., help="A run directory written by `classify train`."),
    split: str = typer.Option("test", "--split"),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Another dataset with the same classes."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default RUN/eval/<split>)."),
) -> None:
    """Accuracy, loss, classification report (text + JSON) and confusion matrix PNG for one split."""
    from classify.evaluate import evaluate_run

    res = evaluate_run(run, split, dataset, out)
    dest = Path(res["out"])
    typer.echo((dest / "report.txt").read_text())
    typer.echo(f"wrote {dest}/report.txt, report.json, predictions.csv, confusion.png")


@app.command()
def predict(
    run: Path = typer.Argument(...),
    images: List[Path] = typer.Argument(..., help="Image files and/or folders (searched recursively)."),
    out: Optional[Path] = typer.Option(None, "--out", help="CSV file (default: print to stdout)."),
) -> None:
    """Class and probabilities per image, as CSV."""
    from classify.predict import predict as run_predict

    if out is not None:
        check_file_output(out, (".csv",), inputs=[("the run", run)] + [("input", p) for p in images])
    text = run_predict(run, images, warn=lambda m: typer.echo(m, err=True))
    if out is None:
        typer.echo(text, nl=False)
    else:
        write_text(out, text)
        typer.echo(f"wrote {out} ({text.count(chr(10)) - 1} images)")


@app.command()
def explain(
    run: Path = typer.Argument(...),
    images: List[Path] = typer.Argument(..., help="Image files and/or folders."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for the PNGs (default RUN/explain)."),
    target: Optional[str] = typer.Option(None, "--target", help="Class to explain (default: the predicted one)."),
    channels: int = typer.Option(256, "--channels", help="Use the N most active feature maps (0 = all)."),
) -> None:
    """Score-CAM heat maps overlaid on each image, as PNG."""
    from classify.scorecam import explain as run_explain

    for p in run_explain(run, images, out, target, channels, warn=lambda m: typer.echo(m, err=True)):
        typer.echo(f"wrote {p}")


@app.command()
def compare(
    runs: List[Path] = typer.Argument(..., help="Run directories."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the table to this Markdown file."),
) -> None:
    """Markdown table of train/val/test accuracy and macro precision/recall/F1 across runs."""
    from classify.compare import table

    if out is not None:
        check_file_output(out, (".md",), inputs=[("run", r) for r in runs])
    text = table(runs)
    typer.echo(text, nl=False)
    if out is not None:
        write_text(out, text)


@app.command()
def models() -> None:
    """List the registry's models."""
    from classify.models import MODELS

    for name, spec in MODELS.items():
        typer.echo(f"{name:18s} {spec.about}")


def main() -> None:
    """Entry point: run the app, turning a UserError into one line on stderr and exit code 2."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        app()
    except UserError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted; rerun the same command to resume", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
