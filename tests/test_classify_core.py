"""classify's numpy cores without real data: augmentation, epoch order, batches, class order, dataset lookup."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from classify.batches import augment, epoch_order
from classify.datasets import load_dataset, order_classes, resolve_root, with_saved_split
from naturalize.fsio import UserError


def _looks(image: np.ndarray) -> list[np.ndarray]:
    """The 8 mirror / quarter-turn versions of one image."""
    return [np.rot90(a, k) for a in (image, image[:, ::-1]) for k in range(4)]


def test_augment_gives_each_image_one_of_its_8_looks_seeded() -> None:
    x = np.random.default_rng(0).integers(0, 256, (64, 5, 5, 3), dtype=np.uint8)
    out = augment(x, np.random.default_rng(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    seen = set()
    for a, b in zip(x, out):
        hits = [k for k, look in enumerate(_looks(a)) if np.array_equal(look, b)]
        assert hits, "an augmented image is not a mirror/turn of its source"
        seen.add(hits[0])
    assert len(seen) == 8  # every look occurs in 64 draws
    assert np.array_equal(augment(x, np.random.default_rng(1)), out)
    assert not np.array_equal(augment(x, np.random.default_rng(2)), out)


def test_epoch_order_is_a_permutation_fixed_by_seed_and_epoch() -> None:
    a = epoch_order(50, 3, 0, True)
    assert sorted(a.tolist()) == list(range(50))
    assert np.array_equal(epoch_order(50, 3, 0, True), a)  # a resumed run sees the same order
    assert not np.array_equal(epoch_order(50, 3, 1, True), a)
    assert epoch_order(5, 3, 7, False).tolist() == [0, 1, 2, 3, 4]


def test_batches_keep_images_and_labels_together() -> None:
    pytest.importorskip("keras")
    from classify.batches import make_batches

    x = np.arange(10, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    y = np.arange(10)
    batches = make_batches(x, y, 4, shuffle=True, seed=1)
    assert len(batches) == 3
    seen = []
    for i in range(len(batches)):
        xb, yb = batches[i]
        assert xb.dtype == np.float32 and np.array_equal(xb[:, 0, 0, 0], yb.astype(np.float32))
        seen += yb.tolist()
    assert sorted(seen) == list(range(10)) and seen != list(range(10))
    first = seen
    batches.on_epoch_end()
    assert [v for i in range(3) for v in batches[i][1].tolist()] != first  # a new order each epoch


def test_known_classes_first_in_pbc_order_then_the_rest() -> None:
    assert order_classes(["SNE", "zeta", "BA", "alpha", "PLT"]) == ("BA", "PLT", "SNE", "alpha", "zeta")


def test_dataset_names_resolve_under_the_data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "home" / "2k-pbc").mkdir(parents=True)
    monkeypatch.setenv("NATURALIZE_DATA", str(tmp_path / "home"))
    assert resolve_root("2k-pbc") == (tmp_path / "home" / "2k-pbc").resolve()
    assert resolve_root(tmp_path / "home") == (tmp_path / "home").resolve()  # a path wins
    with pytest.raises(UserError, match=r"dataset '1k-pbc' not found as a path nor under .*home/"):
        resolve_root("1k-pbc")


def test_a_plain_tree_too_small_to_split_names_the_small_class_folders(tmp_path: Path) -> None:
    """41 images in 5 classes, one of them a PLT/ folder of 1 image: the message named neither PLT nor its count."""
    for cls, n in (("LY", 10), ("MO", 10), ("PLT", 1), ("EO", 2)):
        (tmp_path / "plain" / cls).mkdir(parents=True)
        for i in range(n):
            (tmp_path / "plain" / cls / f"{i}.png").write_bytes(b"")  # listed by name only
    with pytest.raises(UserError, match=r"at least 3; EO/ has 2, PLT/ has 1\); add images to those class folders"):
        load_dataset(tmp_path / "plain", seed=0)


def test_a_run_keeps_the_split_it_saved_for_a_plain_tree(tmp_path: Path) -> None:
    """Evaluate and resume read a plain tree's split from the run's split.csv, not from today's splitter."""
    for cls in ("LY", "MO"):
        (tmp_path / "plain" / cls).mkdir(parents=True)
        for i in range(10):
            (tmp_path / "plain" / cls / f"{i}.png").write_bytes(b"")  # listed by name only
    data = load_dataset(tmp_path / "plain", seed=0)
    saved = data.split_csv()
    swapped = saved.replace(",train\n", ",tmp\n").replace(",test\n", ",train\n").replace(",tmp\n", ",test\n")
    (tmp_path / "split.csv").write_text(swapped + "LY/gone.png,LY,test\nXX/1.png,XX,test\n")
    again = with_saved_split(data, tmp_path / "split.csv")
    assert len(again.items["test"]) == len(data.items["train"]) == 16 and again.items["val"] == data.items["val"]
    assert sorted(again.items["train"]) == sorted(data.items["test"])  # missing files and unknown classes left out
    assert with_saved_split(data, tmp_path / "none.csv") is data


@pytest.mark.parametrize("k", [4, 11])
def test_the_confusion_sheet_labels_cover_no_other_text(k: int) -> None:
    """With few classes the right panel's 'true' label was drawn over the left colour bar's numbers; no text of
    the confusion sheet may overlap another now."""
    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    from classify.plots import confusion_figure

    cm = np.zeros((k, k), int)
    cm[:, 0] = 3  # a model that says one class, 3 test images each: the colour bar reads 0.0, 0.5, ... 3.0
    fig = confusion_figure(cm, [f"C{i}" for i in range(k)], "title")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    cells = {id(t) for ax in fig.axes for t in ax.texts}  # the numbers inside the matrices' squares
    outside = [  # every other visible text: titles, axis labels, tick numbers of the panels and colour bars
        t.get_window_extent(renderer)
        for t in fig.findobj(Text)
        if id(t) not in cells and t.get_visible() and t.get_text().strip() and t.get_window_extent(renderer).width
    ]
    plt.close(fig)
    clashes = [(a, b) for i, a in enumerate(outside) for b in outside[i + 1 :] if a.overlaps(b)]
    assert not clashes, clashes[:3]


def _ticks(axis) -> list[float]:
    """The tick values an axis shows inside its view (matplotlib keeps ticks just outside it too)."""
    lo, hi = sorted(axis.get_view_interval())
    return [float(v) for v in axis.get_ticklocs() if lo - 1e-9 <= v <= hi + 1e-9]


def test_the_curves_count_whole_epochs() -> None:
    """Two epochs drew an x axis of 1.0, 1.2, ... 2.0: 'epoch 1.4' of a curve whose points are whole epochs."""
    import matplotlib.pyplot as plt

    from classify.plots import history_figure

    rows = [
        {"epoch": e, "accuracy": a, "val_accuracy": a, "loss": 2 - a, "val_loss": 2 - a}
        for e, a in ((1, 0.1), (2, 0.2))
    ]
    fig = history_figure(rows, "title")
    fig.canvas.draw()
    ticks = [t for ax in fig.axes for t in _ticks(ax.xaxis)]
    plt.close(fig)
    assert ticks and all(t == int(t) for t in ticks), ticks


def test_the_confusion_counts_colour_bar_counts_whole_images() -> None:
    """A test split of 2 images a class gave the counts' colour bar 0.25, 0.50 ... 1.75: fractions of an image."""
    import matplotlib.pyplot as plt

    from classify.plots import confusion_figure

    cm = np.zeros((11, 11), int)
    cm[:, 2] = 2
    fig = confusion_figure(cm, [f"C{i}" for i in range(11)], "title")
    fig.canvas.draw()
    counts_bar = fig.axes[2]  # panels first, then their colour bars: counts, row-normalised
    ticks = _ticks(counts_bar.yaxis)
    plt.close(fig)
    assert len(ticks) >= 2 and all(t == int(t) for t in ticks), ticks


def test_the_curves_show_accuracy_on_its_whole_scale_and_loss_from_zero() -> None:
    """Auto-scaled axes drew accuracy 0.30 -> 0.32 from the panel's bottom to its top: a leap of 2 points."""
    import matplotlib.pyplot as plt

    from classify.plots import history_figure

    rows = [
        {"epoch": e, "accuracy": a, "val_accuracy": a + 0.01, "loss": x, "val_loss": x + 0.01}
        for e, a, x in ((1, 0.30, 2.10), (2, 0.32, 2.05))
    ]
    fig = history_figure(rows, "title")
    accuracy, loss = fig.axes[:2]
    limits = accuracy.get_ylim(), loss.get_ylim()
    plt.close(fig)
    assert limits[0][0] == 0.0 and 1.0 < limits[0][1] <= 1.05  # 0..1, a marker at 1.0 drawn whole
    assert limits[1][0] == 0.0 and limits[1][1] >= 1.05 * 2.11  # the highest point's marker drawn whole


def test_the_steady_training_rate_leaves_out_each_epochs_first_batch() -> None:
    """train's images/s of the first epoch included the graph build / compile in its first batch (34 img/s, then
    64 steady, for custom_cnn on the sample): the steady rate counts the batches after the first, over the time
    from its end to the last batch's end."""
    import math

    from classify.train import steady_images_per_s

    # 4 batches of 8 images; the first ends 10 s after the epoch began (a build), then 0.5 s each
    assert steady_images_per_s([10.0, 10.5, 11.0, 11.5], 32, 8) == pytest.approx(24 / 1.5)
    assert math.isnan(steady_images_per_s([3.0], 5, 8))  # one batch: no steady part to measure


def test_the_steady_training_rate_counts_full_batches_only() -> None:
    """66 training images in batches of 64 logged "2.1 img/s steady (after the first batch), 65.7 img/s with it":
    the 2 images of the short last batch over a whole step's time. A short last batch is left out like the first:
    the rate is over the full batches after the first, and there is none with fewer than two full batches."""
    import math

    from classify.train import _rates, steady_images_per_s

    assert math.isnan(steady_images_per_s([1.0, 1.95], 66, 64))  # one full batch, then 2 images
    row = {"train_images_per_s": 65.7, "steady_images_per_s": steady_images_per_s([1.0, 1.95], 66, 64)}
    assert _rates(row) == "65.7 img/s (under two full batches: no steady rate)"
    # 8, 8, 8, 6 images: the 2nd and 3rd batches (16 images in 1 s) count, not the last, short one
    assert steady_images_per_s([10.0, 10.5, 11.0, 11.9], 30, 8) == pytest.approx(16 / 1.0)
    assert math.isnan(steady_images_per_s([10.0, 10.5], 10, 8))


def test_the_epoch_log_prints_slow_rates_with_their_digits() -> None:
    """EfficientNetV2-B0 under torch on a loaded 2-core CPU trains at ~0.05 img/s; the epoch log printed "0.0 img/s",
    as if nothing trained. Below 1 img/s the rate keeps two significant digits."""
    from classify.train import rate_text

    assert rate_text(0.0523) == "0.052 img/s"
    assert rate_text(0.5) == "0.5 img/s"
    assert rate_text(64.04) == "64.0 img/s"
    assert rate_text(1234.56) == "1234.6 img/s"
