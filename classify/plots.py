"""PNG figures (matplotlib, Agg): training curves, confusion matrices and Score-CAM overlays (naturalize realism
saves its figures here too). Each PNG records its provenance."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from naturalize.fsio import write_bytes
from naturalize.pngmeta import KEY, text


def save_figure(fig, path: Path, provenance: dict) -> None:
    """Write a matplotlib figure to `path` as PNG (110 dpi, tight) atomically, with `provenance` in its text chunk
    (naturalize.pngmeta), and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(
        buf,
        format="png",
        dpi=110,
        bbox_inches="tight",
        metadata={"Software": "naturalize classify", KEY: text(provenance)},
    )
    plt.close(fig)
    write_bytes(path, buf.getvalue())


def best_epoch(rows: Sequence[dict]) -> int | None:
    """The epoch whose model training kept: the first with the highest val accuracy (None without rows)."""
    if not rows:
        return None
    return int(max(rows, key=lambda r: (float(r["val_accuracy"]), -int(r["epoch"])))["epoch"])


def plot_history(rows: Sequence[dict], path: Path, title: str, provenance: dict) -> None:
    """Accuracy and loss per epoch (train and val) side by side -> PNG."""
    save_figure(history_figure(rows, title), path, provenance)


def history_figure(rows: Sequence[dict], title: str):
    """The matplotlib figure of plot_history: accuracy and loss panels over whole epochs (no 1.2, 1.4 ... ticks
    between two epochs), the kept model's epoch marked. Accuracy is drawn on its whole 0..1 scale and loss from 0,
    so a change of 0.01 does not fill the panel as if it were a leap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    ep = [int(r["epoch"]) for r in rows]
    best = best_epoch(rows)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, label in ((axes[0], "accuracy", "accuracy"), (axes[1], "loss", "loss")):
        ax.plot(ep, [float(r[key]) for r in rows], "o-", label=f"train {label}")
        ax.plot(ep, [float(r[f"val_{key}"]) for r in rows], "s-", label=f"val {label}")
        if best is not None:
            ax.axvline(best, color="0.3", linestyle="--", linewidth=1, label=f"best epoch {best} (kept model)")
        values = [float(r[k]) for r in rows for k in (key, f"val_{key}")]
        finite = [v for v in values if np.isfinite(v)]
        # accuracy on 0..1; loss from 0; each to a little above its top, so a marker there is drawn whole
        ax.set_ylim(0, 1.03 if key == "accuracy" else 1.08 * max(finite, default=1.0) or 1.0)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return fig


def plot_confusion(
    cm: np.ndarray,
    classes: Sequence[str],
    path: Path,
    title: str,
    provenance: dict,
    rows: Sequence[str] | None = None,
) -> None:
    """Confusion matrix (K, K) over `classes` as counts and row-normalised (recall per true class) side by side ->
    PNG; `rows`: the true classes to show (default all; a test set lacking some classes shows its own), every
    class stays a predicted column."""
    save_figure(confusion_figure(cm, classes, title, rows), path, provenance)


def confusion_figure(cm: np.ndarray, classes: Sequence[str], title: str, rows: Sequence[str] | None = None):
    """The matplotlib figure of plot_confusion: counts and row-normalised panels, each with its colour bar, laid
    out so that no label covers another (the right panel's 'true' sat on the left colour bar's numbers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    true = list(classes) if rows is None else list(rows)
    cm = np.asarray(cm)[[list(classes).index(c) for c in true]]
    totals = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, totals, out=np.zeros(cm.shape, float), where=totals > 0)
    k, r = len(classes), len(true)
    fig, axes = plt.subplots(1, 2, figsize=(2 * max(5.0, 0.55 * k + 2), max(4.5, 0.5 * r + 1.5)), layout="constrained")
    for ax, mat, fmt, name in ((axes[0], cm, "d", "counts"), (axes[1], norm, ".2f", "row-normalised")):
        im = ax.imshow(mat, cmap="Blues", vmin=0, vmax=(mat.max() if name == "counts" else 1) or 1)
        ax.set_xticks(range(k), classes, rotation=90)
        ax.set_yticks(range(r), true)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(name)
        hi = (mat.max() if name == "counts" else 1) * 0.6
        for i in range(r):
            for j in range(k):
                ax.text(
                    j,
                    i,
                    format(mat[i, j], fmt),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if mat[i, j] > hi else "black",
                )
        bar = fig.colorbar(im, ax=ax, fraction=0.046)
        if name == "counts":  # counts are whole images: no 0.25, 1.75 ... on their colour bar
            bar.locator = MaxNLocator(integer=True)
            bar.update_ticks()
    fig.suptitle(title)
    return fig


MIN_PANEL_PX = 256  # overlay panels are at least this many pixels on their longer side


def overlay_heatmap(
    image: np.ndarray, cam: np.ndarray, path: Path, title: str, provenance: dict, label: str = "Score-CAM"
) -> None:
    """Image beside the image with a heat map (values 0..1, same H x W) overlaid in 'jet' and titled `label`, both
    panels of one size and height, and a labelled colour bar -> PNG."""
    save_figure(overlay_figure(image, cam, title, label), path, provenance)


def overlay_figure(image: np.ndarray, cam: np.ndarray, title: str, label: str = "Score-CAM"):
    """The matplotlib figure of overlay_heatmap: axes image, overlay, colour bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h, w = cam.shape
    dpi = 110  # save_figure's: each panel shows the image at about one figure pixel per image pixel
    zoom = max(1.0, MIN_PANEL_PX / max(h, w))  # a small crop is drawn larger, pixel for pixel, so titles fit
    pixels = "nearest" if zoom > 1 else None
    # the colour bar has an axis of its own: taken from the overlay's panel it drew the overlay smaller than, and
    # lower than, the image beside it, so the two could not be compared point for point
    fig, axes = plt.subplots(
        1,
        3,
        figsize=(2 * w * zoom / dpi + 1.6, h * zoom / dpi + 0.9),
        gridspec_kw={"width_ratios": [w, w, 0.05 * w]},
    )
    axes[0].imshow(image, interpolation=pixels)
    axes[0].set_title("image")
    axes[1].imshow(image, interpolation=pixels)
    im = axes[1].imshow(cam, cmap="jet", alpha=0.45, vmin=0, vmax=1, interpolation=pixels)
    axes[1].set_title(label)
    for ax in axes[:2]:
        ax.axis("off")
    axes[2].set_box_aspect(h / (0.05 * w))  # as tall as the images
    bar = fig.colorbar(im, cax=axes[2])
    bar.set_label("importance for the class (0..1, normalised)", fontsize=8)
    fig.suptitle(title, fontsize=9)
    return fig
