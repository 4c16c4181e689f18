"""The `classify` command line: thin wrappers over classify.train/evaluate/predict/scorecam/compare.

Keras (and its backend) is imported only inside the commands, so `classify --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

from classify.models import MODELS
from naturalize.clihelp import calm_openmp, examples, new_app, quiet_tensorflow, run_app, version_option
from naturalize.fsio import write_text
from naturalize.outputs import check_file_output

app = new_app(
    "Train, evaluate, predict with and explain Keras blood-cell classifiers on Naturalize datasets.",
    "classify train --dataset datasets/2k-pbc --model efficientnetv2b0 --out runs/2k-effnet",
    "classify evaluate runs/2k-effnet --split test",
)

RUN_HELP = "A run directory written by `classify train` (holds model.keras, classes.json, config.json)."


def _warn(message: str) -> None:
    typer.echo(message, err=True)


@app.callback()
def _root(version: bool = version_option("classify")) -> None:
    """Train, evaluate, predict with and explain Keras blood-cell classifiers (KERAS_BACKEND=tensorflow|torch)."""


@app.command(
    epilog=examples(
        "classify train --dataset datasets/2k-pbc --model efficientnetv2b0 --epochs 10 --out runs/2k-effnet",
        "classify train --dataset datasets/2k-pbc --model custom_cnn --image-size 128 --epochs 15 --out runs/2k-cnn",
    )
)
def train(
    dataset: str = typer.Option(..., "--dataset", help="Dataset name (under ./datasets or $NATURALIZE_DATA) or path."),
    model: str = typer.Option("efficientnetv2b0", "--model", help="Registry model name (see `classify models`)."),
    mode: str = typer.Option(
        "finetune",
        "--mode",
        help="finetune (train all) or transfer (frozen pretrained backbone: not with weights none).",
    ),
    weights: str | None = typer.Option(
        None,
        "--weights",
        help="imagenet, none, or PATH to a local weights file (imagenet needs a download once).",
        show_default="imagenet where Keras has ImageNet weights for the model, else none "
        f"({', '.join(name for name, spec in MODELS.items() if not spec.keras_imagenet)})",
    ),
    epochs: int = typer.Option(10, "--epochs", help="Epochs in all (a larger value continues a finished run)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Images per optimizer step."),
    lr: float = typer.Option(1e-3, "--lr", help="Adam learning rate."),
    image_size: int = typer.Option(224, "--image-size", help="Images are resized to SIZE x SIZE."),
    seed: int = typer.Option(
        0, "--seed", help="Seed of weight init, augmentation, batch order (and a plain tree's split)."
    ),
    out: Path | None = typer.Option(None, "--out", help="Run directory.", show_default="runs/<dataset>_<model>"),
    evaluate: bool = typer.Option(
        True, "--evaluate/--no-evaluate", help="Evaluate the best model on every split at the end."
    ),
) -> None:
    """Train a model; the best by val accuracy is kept; rerun the same command to resume."""
    from classify.models import check_name

    check_name(model)
    from classify.models import default_weights
    from classify.train import train as run_train

    weights = weights or default_weights(model)
    run_train(
        dataset,
        model,
        out,
        mode=mode,
        weights=weights,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        image_size=image_size,
        seed=seed,
        evaluate=evaluate,
        log=typer.echo,
        warn=_warn,
    )


@app.command(
    epilog=examples(
        "classify evaluate runs/2k-effnet --split test",
        "classify evaluate runs/2k-effnet --split test --dataset datasets/pbc11 --out eval-pbc11",
        "classify evaluate runs/2k-effnet --dataset other-lab-cells/ --split all",
    )
)
def evaluate(
    run: Path = typer.Argument(..., help=RUN_HELP),
    split: str | None = typer.Option(
        None,
        "--split",
        help="train, val or test split of the dataset, or all of a --dataset (an external test set).",
        show_default="test; all for a --dataset that is a plain <CLASS>/ tree",
    ),
    dataset: str | None = typer.Option(
        None,
        "--dataset",
        help="Another dataset with the run's classes, or some of them (the report names the absent ones).",
        show_default="the run's own",
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Output folder.", show_default="RUN/eval/<split>, or RUN/eval/<dataset>-<split>"
    ),
) -> None:
    """Accuracy, loss, classification report (text + JSON) and confusion matrix PNG for one split."""
    from classify.evaluate import evaluate_run

    res = evaluate_run(run, split, dataset, out, warn=_warn)
    dest = Path(res["out"])
    typer.echo((dest / "report.txt").read_text())
    typer.echo(f"wrote {dest}/report.txt, report.json, predictions.csv, confusion.png")


@app.command(
    epilog=examples(
        "classify predict runs/2k-effnet cells/ one.jpg --out preds.csv",
        "classify predict runs/2k-effnet datasets/2k-pbc/test/PMY",
    )
)
def predict(
    run: Path = typer.Argument(..., help=RUN_HELP),
    images: list[Path] = typer.Argument(..., help="Image files and/or folders (searched recursively)."),
    out: Path | None = typer.Option(None, "--out", help="CSV file.", show_default="print to stdout"),
) -> None:
    """Class and probabilities per image, as CSV."""
    from classify.predict import predict as run_predict

    if out is not None:
        check_file_output(out, (".csv",), inputs=[("the run", run)] + [("input", p) for p in images])
    text = run_predict(run, images, warn=_warn)
    if out is None:
        typer.echo(text, nl=False)
    else:
        write_text(out, text)
        n = text.count("\n") - 1
        typer.echo(f"wrote {out} ({n} image{'' if n == 1 else 's'})")


@app.command(
    epilog=examples(
        "classify explain runs/2k-effnet datasets/2k-pbc/test/EO/EO_162162.jpg --out cams/",
        "classify explain runs/2k-effnet datasets/2k-pbc/test/PMY --target PMY --channels 64",
    )
)
def explain(
    run: Path = typer.Argument(..., help=RUN_HELP),
    images: list[Path] = typer.Argument(..., help="Image files and/or folders."),
    out: Path | None = typer.Option(None, "--out", help="Folder for the PNGs.", show_default="RUN/explain"),
    target: str | None = typer.Option(None, "--target", help="Class to explain.", show_default="the predicted one"),
    channels: int = typer.Option(256, "--channels", help="Use the N most active feature maps (0 = all)."),
) -> None:
    """Score-CAM heat maps overlaid on each image at its own resolution, as PNG."""
    from classify.scorecam import explain as run_explain

    for p in run_explain(run, images, out, target, channels, warn=_warn):
        typer.echo(f"wrote {p}")


@app.command(epilog=examples("classify compare runs/2k-effnet runs/2k-cnn --out table.md"))
def compare(
    runs: list[Path] = typer.Argument(..., help="Run directories."),
    out: Path | None = typer.Option(
        None, "--out", help="Also write the table to this Markdown file.", show_default="print only"
    ),
) -> None:
    """Markdown table across runs: dataset, model, weights, mode, size, epochs; train/val/test accuracy, P/R/F1."""
    from classify.compare import table

    if out is not None:
        check_file_output(out, (".md",), inputs=[("run", r) for r in runs])
    text = table(runs)
    typer.echo(text, nl=False)
    if out is not None:
        write_text(out, text)


@app.command(epilog=examples("classify models"))
def models() -> None:
    """List the registry's models."""
    from classify.models import MODELS

    for name, spec in MODELS.items():
        typer.echo(f"{name:18s} {spec.about}")


def main() -> None:
    """Entry point: run the app (clihelp.run_app: a UserError is one line on stderr and exit code 2, Ctrl-C one
    `interrupted` line and exit code 130; TensorFlow's log noise silenced: clihelp.quiet_tensorflow; idle OpenMP
    threads sleep: clihelp.calm_openmp)."""
    quiet_tensorflow()
    calm_openmp()
    run_app(app)


if __name__ == "__main__":
    main()
