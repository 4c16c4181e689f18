"""`naturalize realism`: the critic finds a tell that synthetic images carry, sees none between two halves
of the same real images, drops duplicate files (within a side, and synthetic copies of real ones), writes its
report; bad input (the same images on both sides too) is one clear error.

Small drawn trees (naturalize.drawn) and fast critic settings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from naturalize.drawn import write_drawn_release
from naturalize.realism.critic import CriticParams
from naturalize.realism.report import table
from naturalize.realism.run import realism
from naturalize.testing.cli import run_cli

FAST = CriticParams(size=48, epochs=15, batch=8, widths=(8, 16, 16))
#: the keys of a realism result that `left_out` reads, for a run that left nothing out
NOTHING_LEFT_OUT = {
    "real": "/r",
    "real_duplicates_dropped": 0,
    "synthetic_duplicates_dropped": 0,
    "synthetic_same_as_real_dropped": 0,
    "synthetic_classes_untested": [],
    "unclassed_left_out": {"real": [], "synthetic": []},
}


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(real, synthetic): drawn PMY and SNE images; the synthetic ones (another seed) carry a tell, a dark
    square in a corner, as a composite might carry a seam."""
    base = tmp_path_factory.mktemp("realism")
    real = write_drawn_release(base / "real", {"PMY": 30, "SNE": 30}, seed=0)
    syn = write_drawn_release(base / "syn", {"PMY": 30, "SNE": 30}, seed=1)
    for p in Path(syn).rglob("*.jpg"):
        im = cv2.imread(str(p))
        im[:90, :90] = (60, 20, 90)
        cv2.imwrite(str(p), im)
    first = min(Path(real).rglob("PMY_*.jpg"))
    shutil.copy(first, first.with_name("PMY_copy_0.jpg"))  # a byte-identical copy: dropped
    sne = min(Path(real).rglob("SNE_*.jpg"))
    shutil.copy(sne, next(Path(syn).rglob("SNE_*.jpg")).with_name("SNE_real_copy.jpg"))  # on both sides: dropped
    pmy = sorted(Path(real).rglob("PMY_*.jpg"))[1]
    cv2.imwrite(str(next(Path(syn).rglob("PMY_*.jpg")).with_name("PMY_resaved.png")), cv2.imread(str(pmy)))
    mirrored = cv2.imread(str(sorted(Path(real).rglob("PMY_*.jpg"))[2]))[:, ::-1]
    cv2.imwrite(str(next(Path(syn).rglob("PMY_*.jpg")).with_name("PMY_mirrored.png")), mirrored)
    (Path(syn) / "LY").mkdir()  # a class the real side lacks: reported as untested, not dropped silently
    for i in range(3):
        cv2.imwrite(str(Path(syn) / "LY" / f"cell_{i}.png"), np.full((64, 64, 3), 40 * i, np.uint8))
    return Path(real), Path(syn)


def test_critic_finds_the_tell_and_not_real_against_real(trees: tuple[Path, Path], tmp_path: Path) -> None:
    real, syn = trees
    out = tmp_path / "out"
    result = realism(real, syn, out, seeds=2, params=FAST, saliency=4, progress=False)
    assert result["real_duplicates_dropped"] == 1 and result["per_class_images"] == {"PMY": 30, "SNE": 30}
    assert result["synthetic_same_as_real_dropped"] == 1 and result["synthetic_images"] == 65
    # a PNG re-save of a real image has other bytes but the same pixels, a mirrored one the pixels the critic's
    # flips make of it: both left out as well
    assert result["synthetic_near_copies_of_real_dropped"] == 2
    assert result["real_vs_real_per_class_images"] == {"PMY": 15, "SNE": 15}
    assert result["synthetic_classes_untested"] == ["LY"]
    assert result["pooled"]["real_vs_synthetic"]["mean"] >= 0.9
    assert result["pooled"]["real_vs_real"]["mean"] <= 0.8
    for c in ("PMY", "SNE"):
        assert len(result["per_class"][c]["real_vs_synthetic"]["auc"]) == 2
    assert json.loads((out / "realism.json").read_text())["pooled"] == result["pooled"]
    for name in ("auc.png", "saliency.png"):
        assert cv2.imread(str(out / name)) is not None
    # the printed table warns that 30 images a side give a noisy AUC per class; enough images, no warning
    assert "note: PMY, SNE have fewer than 50 images per side" in table(result)
    enough = result | {"per_class": {c: r | {"images": 50} for c, r in result["per_class"].items()}}
    assert "note:" not in table(enough)


def test_bad_input_is_one_clear_error(trees: tuple[Path, Path], tmp_path: Path) -> None:
    real, syn = trees
    (tmp_path / "empty").mkdir()
    resaved = tmp_path / "resaved"  # the real PMY images saved again as PNG: other bytes, the same pictures
    resaved.mkdir()
    for p in real.rglob("PMY_*.jpg"):
        cv2.imwrite(str(resaved / f"{p.stem}.png"), cv2.imread(str(p)))
    inner = next(p for p in real.iterdir() if p.is_dir())
    copies = tmp_path / "copies"  # only copies of real images: nothing synthetic is left
    shutil.copytree(inner, copies)
    mixed = tmp_path / "train"  # as a dataset's train folder: real images beside hard links to composites
    shutil.copytree(inner, mixed / "PMY")
    for i, p in enumerate(sorted(syn.rglob("PMY_*.jpg"))[:5]):
        shutil.copy(p, mixed / "PMY" / f"PMY_syn_0_{i}.jpg")
    few = tmp_path / "few"  # 3 SNE images: too few for SNE, enough PMY
    few.mkdir()
    for p in [*real.rglob("PMY_*.jpg"), *sorted(real.rglob("SNE_*.jpg"))[:3]]:
        shutil.copy(p, few / p.name)
    # and an unreadable PMY: too few images is found from the file names, before any is decoded (it came after
    # decoding every image of the classes, a minute for a whole PBC release)
    (few / "PMY_broken.jpg").write_bytes(b"not a JPEG")
    cases = [
        # the refusal named no folder and no way on
        (["--real", str(few), "--synthetic", str(syn)], f"error: too few images of SNE (SNE: 3 in --real {few}, 30 in"),
        (["--real", str(tmp_path / "none"), "--synthetic", str(syn)], "error: --real"),
        # a cap under 5 was refused as 'too few images' next to counts of 30 a side; a negative one was ignored
        (["--real", str(real), "--synthetic", str(syn), "--per-class", "3"], "error: --per-class 3: give at least 5"),
        (["--real", str(real), "--synthetic", str(syn), "--per-class", "-1"], "error: --per-class -1: give at least 5"),
        (["--real", str(real), "--synthetic", str(syn), "--classes", "LY"], "error: --real"),
        # a class asked for that one side lacks used to vanish from the table
        (
            ["--real", str(real), "--synthetic", str(syn), "--classes", "PMY,LY"],
            f"error: --classes PMY,LY: --real {real} has no LY",
        ),
        (["--real", str(real), "--synthetic", str(tmp_path / "empty")], "error: --synthetic"),
        (["--real", str(real), "--synthetic", str(syn), "--out", str(real / "report")], "error: --out"),
        # the same images on both sides would read as perfectly realistic: refused before any work
        (["--real", str(real), "--synthetic", str(real)], f"error: --synthetic {real} is the --real folder"),
        (["--real", str(real), "--synthetic", str(inner)], "error: --synthetic"),
        (["--real", str(inner), "--synthetic", str(real)], "error: --synthetic"),
        (["--real", str(real), "--synthetic", str(copies)], "error: --synthetic"),
        # re-saved real images: with their own bytes they passed as synthetic, and were scored against themselves
        (["--real", str(real), "--synthetic", str(resaved)], f"error: --synthetic {resaved}: every image is the same"),
        # composites on the real side used to count as real (with a warning calling them copies of real images)
        (["--real", str(mixed), "--synthetic", str(syn)], f"error: --real {mixed} holds 5 Naturalize composites"),
    ]
    for args, start in cases:
        out = [] if "--out" in args else ["--out", str(tmp_path / "o")]
        r = run_cli("naturalize", "realism", *args, *out)
        assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith(start), r.stderr
        assert "--classes PMY" in r.stderr or str(few) not in args
        assert "Traceback" not in r.stderr
        assert not (tmp_path / "o").exists(), f"{args}: a refused run left its --out folder behind"


def test_class_folders_by_release_name_count_and_the_rest_is_reported(tmp_path: Path) -> None:
    """A user's own synthetic tree in the release's folder names (lymphocyte/, platelet/) used to be skipped
    silently (only PMY/-style folders counted); a folder of several classes (neutrophil/) is reported, not hidden."""
    from naturalize.realism.data import gather

    files = {
        "lymphocyte/img_0.png": "LY",
        "platelet/a.png": "PLT",
        "sne/x.png": "SNE",
        "misc/PMY_3.png": "PMY",
        "Promyelocyte/p.png": "PMY",
        "band_neutrophil/b.png": "BNE",
    }
    for i, name in enumerate([*files, "neutrophil/n.png"]):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / name), np.full((8, 8, 3), i * 20, np.uint8))
    got = gather(tmp_path, "--synthetic")
    assert {p.relative_to(tmp_path).as_posix(): c for p, c in zip(got.paths, got.classes)} == files
    assert got.unclassed == (tmp_path / "neutrophil" / "n.png",)


def test_auc_figure_shows_every_bar_and_dot() -> None:
    """The AUC figure's legend sat on the first class's bars (a critic at AUC 1.0 hid under it) and a seed's AUC
    below 0.3 (common for real vs real on few images) fell off the axis."""
    from naturalize.realism.critic import Trial
    from naturalize.realism.report import auc_figure, summarise

    def t(auc: float) -> Trial:
        return Trial(auc, {"PMY": auc, "SNE": auc}, np.arange(2), np.zeros(2), None)

    result = summarise(
        {"real_vs_synthetic": [t(1.0), t(0.98)], "real_vs_real": [t(0.17), t(0.45)]},
        ["PMY", "SNE"],
        {"PMY": 9, "SNE": 9},
    )
    fig = auc_figure(result)
    ax = fig.axes[0]
    assert ax.get_ylim()[0] <= 0.17
    fig.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    assert not any(legend.overlaps(bar.get_window_extent()) for bar in ax.patches)


def test_auc_bars_start_at_chance_inside_the_axis() -> None:
    """The bars stood on 0 while the axis began at 0.3: their visible lengths were not their values (AUC 0.58
    against 0.48 drew a bar 1.6 times as tall). Each bar now spans from 0.5 (chance) to its mean AUC."""
    from naturalize.realism.critic import Trial
    from naturalize.realism.report import auc_figure, summarise

    def t(auc: float) -> Trial:
        return Trial(auc, {"PMY": auc}, np.arange(2), np.zeros(2), None)

    result = summarise({"real_vs_synthetic": [t(0.58)], "real_vs_real": [t(0.48)]}, ["PMY"], {"PMY": 30})
    fig = auc_figure(result)
    ax = fig.axes[0]
    low, high = ax.get_ylim()
    ends = sorted(tuple(sorted((bar.get_y(), bar.get_y() + bar.get_height()))) for bar in ax.patches)
    assert all(low <= lo and hi <= high for lo, hi in ends), (ends, low)  # every bar whole on the axis
    # PMY and the pooled group: real vs real from 0.48 up to chance, real vs synthetic from chance up to 0.58
    assert np.allclose(ends, [(0.48, 0.5), (0.48, 0.5), (0.5, 0.58), (0.5, 0.58)]), ends


def test_saliency_tiles_name_their_class() -> None:
    """Each saliency tile's title says which side and which class the image is of (it named only the side, so a
    multi-class test's sheet could not be read per class)."""
    from naturalize.realism.critic import Trial, build_critic
    from naturalize.realism.report import saliency_figure

    p = CriticParams(size=32, widths=(4, 8))
    x = np.random.default_rng(0).integers(0, 255, (6, 32, 32, 3), dtype=np.uint8)
    classes = ["PMY", "SNE", "PMY", "SNE", "PMY", "SNE"]
    trial = Trial(1.0, {}, np.array([0, 1, 3, 4]), np.array([0.1, 0.2, 0.9, 0.8]), build_critic(p))
    fig = saliency_figure(trial, x, classes, n_real=3, n=2)
    titles = [ax.get_title() for ax in fig.axes[: len(fig.axes) // 2]]
    assert [t.split("\n")[0] for t in titles] == ["synthetic SNE", "synthetic PMY", "real SNE"]


def test_the_saliency_heat_maps_have_a_labelled_scale_and_stay_under_their_images() -> None:
    """The heat maps had no colour bar: what red meant, and on which scale, was not on the sheet."""
    import matplotlib.pyplot as plt

    from naturalize.realism.critic import Trial, build_critic
    from naturalize.realism.report import saliency_figure

    p = CriticParams(size=32, widths=(4, 8))
    x = np.random.default_rng(0).integers(0, 255, (6, 32, 32, 3), dtype=np.uint8)
    trial = Trial(1.0, {}, np.array([0, 1, 3, 4]), np.array([0.1, 0.2, 0.9, 0.8]), build_critic(p))
    fig = saliency_figure(trial, x, ["PMY"] * 6, n_real=3, n=2)
    images = [ax for ax in fig.axes if ax.get_images()]
    bars = [ax for ax in fig.axes if ax not in images]
    top, bottom = images[:3], images[3:]
    labels = [ax.get_ylabel() for ax in bars]
    plt.close(fig)
    assert len(bars) == 1 and "0..1" in labels[0], labels
    for a, b in zip(top, bottom):  # each heat map exactly under its image
        pa, pb = a.get_position(), b.get_position()
        assert abs(pa.x0 - pb.x0) < 1e-6 and abs(pa.width - pb.width) < 1e-6


def test_the_critics_score_cam_calls_its_models_as_they_were_built() -> None:
    """Every `naturalize realism` printed Keras's "UserWarning: The structure of `inputs` doesn't match the expected
    structure. Expected: ['keras_tensor'] Received: inputs=Tensor(shape=(1, 128, 128, 3))" (TensorFlow and torch):
    the saliency sheet's feature model was built on the critic's list of inputs and called with one batch."""
    import warnings

    from naturalize.realism.critic import Trial, build_critic
    from naturalize.realism.report import saliency_figure

    p = CriticParams(size=32, widths=(4, 8))
    x = np.random.default_rng(0).integers(0, 255, (6, 32, 32, 3), dtype=np.uint8)
    trial = Trial(1.0, {}, np.array([0, 1, 3, 4]), np.array([0.1, 0.2, 0.9, 0.8]), build_critic(p))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        saliency_figure(trial, x, ["PMY"] * 6, n_real=3, n=2)
    assert not [w for w in caught if "structure" in str(w.message)], [str(w.message) for w in caught]


def test_every_image_left_out_gets_a_warning_line() -> None:
    """Byte-identical repeats within a side were left out with no word on the terminal (the table just showed fewer
    images); each kind of left-out image now has its warning line, and a run that used everything has none."""
    from naturalize.realism.report import left_out

    clean = dict(NOTHING_LEFT_OUT)
    assert left_out(clean) == []
    lines = left_out(clean | {"real_duplicates_dropped": 1, "synthetic_duplicates_dropped": 3})
    assert lines[0].startswith("warning: left out 1 --real image(s) byte-identical to another --real image")
    assert lines[1].startswith("warning: left out 3 --synthetic image(s) byte-identical to another --synthetic")
    assert len(lines) == 2


def test_realism_prints_no_tensorflow_noise(
    trees: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`naturalize realism` (and demo) printed TensorFlow's "failed call to cuInit: ... CUDA error" on a machine
    without a GPU and its 600-character "triggered tf.function retracing" warnings above the table: `classify`
    silenced both, `naturalize` did not."""
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)  # as a user's shell has it (another test may set it)
    real, syn = trees
    args = ("--real", real, "--synthetic", syn, "--out", tmp_path / "out", "--classes", "PMY", "--per-class", "12")
    r = run_cli("naturalize", "realism", *args, "--seeds", "3", "--epochs", "1", "--size", "32", "--no-progress")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "cuInit" not in r.stderr and "retracing" not in r.stderr, r.stderr[-2000:]
    assert "doesn't match the expected structure" not in r.stderr, r.stderr[-2000:]
    assert "real vs synthetic" in r.stdout


def test_a_jpeg_and_its_png_copy_reach_the_critic_as_the_same_pixels(trees: tuple[Path, Path], tmp_path: Path) -> None:
    """The critic's images were decoded as classify's cache does: a JPEG downscaled in the DCT domain (draft), a PNG
    resized from full size; the same picture then differed by ~1 grey level, and a critic told real PBC crops from
    their own lossless PNG copies (AUC 0.60 at 64 px): a test of file format, not of realism."""
    from naturalize.realism.pixels import decode

    jpg = min(trees[0].rglob("PMY_*.jpg"))
    png = tmp_path / "copy.png"
    cv2.imwrite(str(png), cv2.imread(str(jpg)))
    got = decode([jpg, png], 48)
    assert np.array_equal(got.x[0], got.x[1])
    assert got.kinds[0].startswith("JPEG ") and got.kinds[1].startswith("PNG ")


def test_the_real_vs_real_baseline_has_as_many_images_as_the_test(tmp_path: Path) -> None:
    """Real vs real cut every real image of a class in two halves, whatever --per-class: with 30 real images and
    --per-class 6 the baseline compared 15 against 15 while the test compared 6 against 6, so the baseline was less
    noisy than the number it is read against."""
    real = write_drawn_release(tmp_path / "real", {"PMY": 30, "SNE": 5, "MY": 5}, seed=0, progress=False)
    syn = write_drawn_release(tmp_path / "syn", {"PMY": 30, "SNE": 5, "MY": 5}, seed=1, progress=False)
    p = CriticParams(size=32, epochs=1, batch=8, widths=(4, 8))
    result = realism(real, syn, tmp_path / "out", seeds=1, per_class=6, params=p, saliency=2, progress=False)
    assert result["per_class_images"] == {"MY": 5, "PMY": 6, "SNE": 5}
    assert result["real_vs_real_per_class_images"] == {"MY": 2, "PMY": 6, "SNE": 2}
    assert result["pooled"]["real_vs_real"]["mean"] is not None


def test_three_classes_of_five_images_are_enough(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """5 images of a class a side is the least the test takes, but 3 such classes crashed with a traceback:
    real vs real (2 a side per class, 12 images in 6 label x class groups) held out 40 % = 5 images, and
    scikit-learn refused "The test_size = 5 should be greater or equal to the number of classes = 6".
    Also: realism.json named the images it left out (no class) as given, so it changed with the current directory."""
    counts = {"PMY": 5, "SNE": 5, "MY": 5}
    real = write_drawn_release(tmp_path / "real", counts, seed=0, progress=False)
    syn = write_drawn_release(tmp_path / "syn", counts, seed=1, progress=False)
    (real / "misc").mkdir()
    cv2.imwrite(str(real / "misc" / "cell.png"), np.zeros((8, 8, 3), np.uint8))
    p = CriticParams(size=32, epochs=1, batch=8, widths=(4, 8))
    monkeypatch.chdir(tmp_path)
    result = realism(Path("real"), syn, tmp_path / "out", seeds=1, params=p, saliency=2, progress=False)
    assert result["pooled"]["real_vs_real"]["mean"] is not None
    assert result["unclassed_left_out"] == {"real": ["misc/cell.png"], "synthetic": []}


def test_sides_of_another_format_or_size_are_warned_of() -> None:
    """A critic can tell PNG from JPEG, or 256x256 from 360x363 crops, without any realism: the run neither
    recorded the sides' formats nor said a word when they differed."""
    from naturalize.realism.report import left_out

    clean = NOTHING_LEFT_OUT | {
        "real_formats": {"JPEG 360x363": 90, "JPEG 366x369": 10},
        "synthetic_formats": {"JPEG 360x363": 50},
    }
    assert left_out(clean) == []
    (line,) = left_out(clean | {"synthetic_formats": {"PNG 256x256": 40, "JPEG 360x363": 10}})
    assert "image format (--real mostly JPEG, --synthetic mostly PNG)" in line
    assert "pixel size (--real mostly 360x363, --synthetic mostly 256x256)" in line


def test_the_saliency_sheet_says_how_well_its_critic_did() -> None:
    """Each heat map is scaled to 0..1, so a critic at chance drew maps as vivid as one that found a tell; the
    sheet did not say which it was."""
    from naturalize.realism.critic import Trial, build_critic
    from naturalize.realism.report import saliency_figure

    p = CriticParams(size=32, widths=(4, 8))
    x = np.random.default_rng(0).integers(0, 255, (6, 32, 32, 3), dtype=np.uint8)
    trial = Trial(0.52, {}, np.array([0, 1, 3, 4]), np.array([0.1, 0.2, 0.9, 0.8]), build_critic(p))
    title = saliency_figure(trial, x, ["PMY"] * 6, n_real=3, n=2).texts[0].get_text()
    assert "held-out AUC 0.52" in title and "chance" in title


def test_a_run_stopped_between_its_files_leaves_a_folder_the_rerun_takes(
    trees: tuple[Path, Path], tmp_path: Path
) -> None:
    """The marker was written after realism.json, auc.png and saliency.png: a run that ran out of room (or was
    stopped) between them left files but no marker, and every rerun into that --out was refused as "not written by
    naturalize". A real failure: the last file written outgrows RLIMIT_FSIZE (EFBIG, as a full disk fails)."""
    import resource
    import signal
    import subprocess
    import sys

    real, syn = trees
    args = ["--real", real, "--synthetic", syn, "--classes", "PMY", "--per-class", "6"]
    args += ["--seeds", "1", "--epochs", "1", "--size", "32", "--no-progress"]

    def run(out: Path, limit: int | None = None) -> subprocess.CompletedProcess:
        def cap() -> None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        cmd = [sys.executable, "-m", "naturalize.cli", "realism", *map(str, args), "--out", str(out)]
        return subprocess.run(cmd, capture_output=True, text=True, preexec_fn=cap if limit else None)

    whole = tmp_path / "whole"
    assert run(whole).returncode == 0
    sizes = {name: (whole / name).stat().st_size for name in ("realism.json", "auc.png", "saliency.png")}
    assert sizes["saliency.png"] > max(sizes["realism.json"], sizes["auc.png"])  # written last: the one to fail
    out = tmp_path / "out"
    stopped = run(out, (sizes["saliency.png"] + max(sizes["realism.json"], sizes["auc.png"])) // 2)
    errors = [line for line in stopped.stderr.splitlines() if line.startswith("error:")]
    assert stopped.returncode == 1 and len(errors) == 1 and "saliency.png" in errors[0], stopped.stderr[-2000:]
    assert {p.name for p in out.iterdir() if not p.name.startswith(".")} == {"realism.json", "auc.png"}
    again = run(out)
    assert again.returncode == 0, again.stderr[-2000:]
    for name in ("auc.png", "saliency.png"):
        assert (out / name).read_bytes() == (whole / name).read_bytes(), name
    timing = {"date", "wall_s"}  # the only keys a rerun changes (docs/reproducibility.md)
    got, want = (json.loads((d / "realism.json").read_text()) for d in (out, whole))
    assert {k: v for k, v in got.items() if k not in timing} == {k: v for k, v in want.items() if k not in timing}
