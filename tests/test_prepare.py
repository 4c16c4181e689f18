"""`naturalize prepare` and the PBC reader: layouts, labelling rules, duplicates, splits, outputs."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from naturalize.fsio import UserError
from naturalize.prepare import apply_curation, prepare
from naturalize.records import load_sources, read_records, scan
from naturalize.testing.cli import run_cli

EXPECTED_SAMPLE = {
    "BA": 303,
    "BNE": 300,
    "EO": 304,
    "ERB": 300,
    "LY": 300,
    "MMY": 300,
    "MO": 301,
    "MY": 300,
    "PLT": 300,
    "PMY": 298,
    "SNE": 300,
}


def _jpeg(path: Path, seed: int, mode: str = "RGB", size=(40, 36), fmt: str = "JPEG") -> bytes:
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], len(mode))
    im = Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, fmt)
    return path.read_bytes()


def _tree_hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def messy_release(tmp_path: Path) -> Path:
    """A tiny release-layout tree holding every kind of bad or odd file the reader must handle."""
    root = tmp_path / "PBC" / "PBC_dataset_normal_DIB"
    for i in range(6):
        _jpeg(root / "basophil" / f"BA_{i}.jpg", i)
        _jpeg(root / "ig" / f"PMY_{i}.jpg", 100 + i)
        _jpeg(root / "neutrophil" / f"SNE_{i}.jpg", 200 + i)
    _jpeg(root / "ig" / "IG_1.jpg", 300)
    _jpeg(root / "neutrophil" / "NEUTROPHIL_1.jpg", 301)
    (root / "neutrophil" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + b"\x00" * 100)
    (root / "neutrophil" / "notes.txt").write_text("not an image")
    (root / "basophil" / "BA_empty.jpg").write_bytes(b"")
    good = (root / "basophil" / "BA_0.jpg").read_bytes()
    (root / "basophil" / "BA_trunc.jpg").write_bytes(good[: len(good) // 2])
    _jpeg(root / "basophil" / "BA_png.jpg", 400, fmt="PNG")  # a PNG named .jpg
    _jpeg(root / "basophil" / "BA_gray.jpg", 401, mode="L")  # grayscale
    _jpeg(root / "basophil" / "BA_rgba.png", 402, mode="RGBA", fmt="PNG", size=(50, 20))
    _jpeg(root / "ig" / "XYZ_1.jpg", 403)  # unknown prefix
    (root / "ig" / "PMY_dup.jpg").write_bytes((root / "ig" / "PMY_0.jpg").read_bytes())  # same-class duplicate
    (root / "neutrophil" / "SNE_x.jpg").write_bytes((root / "basophil" / "BA_5.jpg").read_bytes())  # cross-class
    (root / "lymphocyte").mkdir()  # empty folder
    return tmp_path / "PBC"


def test_sample_counts_match_the_release_rules(sample_root: Path, tmp_path: Path):
    summary = prepare(sample_root, tmp_path / "prep", progress=False)
    assert {c: v["total"] for c, v in summary["per_class"].items()} == EXPECTED_SAMPLE
    assert summary["images"] == 3306
    assert summary["unlabeled_dropped"] == {"IG": 151, "NEUTROPHIL": 50}
    assert summary["duplicates_removed"] == 18
    # the sample's one non-image, neutrophil/.DS_169665.jpg (a macOS .DS_Store under an image name), is hidden: unread
    assert summary["non_images_skipped"] == 0 and summary["hidden"] == [
        "PBC_dataset_normal_DIB/neutrophil/.DS_169665.jpg"
    ]
    records = read_records(tmp_path / "prep" / "records.csv")
    paths = {r.path for r in records}
    # the release's one cross-class pair is dropped on both sides
    assert not any(p.endswith(("EO_225902.jpg", "BNE_191112.jpg")) for p in paths)
    assert len({r.sha256 for r in records}) == len(records)
    # the split is stratified: every class has ~80/10/10
    for c, v in summary["per_class"].items():
        assert abs(v["train"] - 0.8 * v["total"]) <= 2 and abs(v["test"] - 0.1 * v["total"]) <= 2, c


def test_messy_tree_every_rule(messy_release: Path, tmp_path: Path):
    before = _tree_hashes(messy_release)
    result = scan(messy_release, workers=1, progress=False)
    reasons = {Path(d.path).name: d.reason for d in result.dropped}
    assert reasons["IG_1.jpg"] == reasons["NEUTROPHIL_1.jpg"] == "unlabeled"
    assert reasons["notes.txt"] == "non_image" and reasons[".DS_Store"] == "hidden"  # a dot-file: not read
    assert reasons["BA_empty.jpg"] == "empty"
    assert reasons["BA_trunc.jpg"] == "unreadable"
    assert reasons["XYZ_1.jpg"] == "unknown_prefix"
    assert reasons["PMY_dup.jpg"] == "duplicate"  # PMY_0.jpg sorts first and is kept
    assert reasons["SNE_x.jpg"] == reasons["BA_5.jpg"] == "duplicate_conflict"
    kept = {Path(r.path).name: r for r in result.records}
    assert "PMY_0.jpg" in kept and "PMY_dup.jpg" not in kept
    assert kept["BA_png.jpg"].cls == "BA"
    assert kept["BA_gray.jpg"].mode == "L"
    assert (kept["BA_rgba.png"].mode, kept["BA_rgba.png"].width, kept["BA_rgba.png"].height) == ("RGBA", 50, 20)
    assert result.layout == "release"
    assert result.empty_folders == ["PBC_dataset_normal_DIB/lymphocyte"]
    assert _tree_hashes(messy_release) == before  # the input is never modified


def test_same_seed_same_bytes_and_no_overwrite(messy_release: Path, tmp_path: Path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    prepare(messy_release, a, seed=3, progress=False)
    prepare(messy_release, b, seed=3, progress=False)
    prepare(messy_release, c, seed=4, fractions=(0.5, 0.25, 0.25), progress=False)
    for name in ("records.csv", "summary.json", "dropped.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / "records.csv").read_bytes() != (c / "records.csv").read_bytes()
    with pytest.raises(UserError, match="--overwrite"):
        prepare(messy_release, a, seed=3, progress=False)
    prepare(messy_release, a, seed=4, fractions=(0.5, 0.25, 0.25), overwrite=True, progress=False)
    assert (a / "records.csv").read_bytes() == (c / "records.csv").read_bytes()


def test_materialize_links_and_curation(messy_release: Path, tmp_path: Path):
    out = tmp_path / "prep"
    summary = prepare(messy_release, out, materialize=True, progress=False)
    records = read_records(out / "records.csv")
    for r in records:
        placed = out / r.split / r.cls / Path(r.path).name
        assert placed.read_bytes() == (messy_release / r.path).read_bytes()
        assert os.stat(placed).st_ino == os.stat(messy_release / r.path).st_ino  # a hard link, not a copy
    assert sum(summary["per_split"].values()) == len(records)
    victim = records[0]
    before = (out / "records.csv").read_bytes()
    curated = apply_curation(records, {victim.path: "multi_wbc"})
    assert [r.path for r in curated if r.excluded] == [victim.path] and curated[0].excluded == "multi_wbc"
    assert [r.path for r in curated] == [r.path for r in records]
    assert (out / "records.csv").read_bytes() == before  # pure: the prepared directory is never rewritten
    assert (messy_release / victim.path).exists()


def test_overwrite_refuses_a_users_file_in_the_materialized_tree(messy_release: Path, tmp_path: Path):
    """prepare --overwrite used to remove OUT/train/ etc. whole, with any file the user had put inside; now it
    removes only what records.csv says it linked there and refuses anything else (a link to a file outside too)."""
    out = tmp_path / "prep"
    args = ["prepare", messy_release, "--out", out, "--materialize", "--workers", 1, "--no-progress"]
    assert run_cli("naturalize", *args).returncode == 0
    made = _tree_hashes(out)
    cls = next(p for p in sorted((out / "train").iterdir()) if p.is_dir())
    outside = tmp_path / "outside.txt"
    outside.write_text("mine, outside")
    (cls / "notes.txt").write_text("mine")
    (out / "val" / "my-link.jpg").symlink_to(outside)
    before = _tree_hashes(out)
    bad = run_cli("naturalize", *args, "--overwrite")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert f"{cls / 'notes.txt'} was not written by naturalize (prepared)" in bad.stderr, bad.stderr
    assert _tree_hashes(out) == before and (out / "val" / "my-link.jpg").is_symlink()
    assert outside.read_text() == "mine, outside"
    (cls / "notes.txt").unlink()
    (out / "val" / "my-link.jpg").unlink()
    assert run_cli("naturalize", *args, "--overwrite").returncode == 0
    assert _tree_hashes(out) == made


def test_split_tree_keeps_splits_and_dedups_towards_train(tmp_path: Path):
    root = tmp_path / "tree"
    seed = 0
    for split in ("train", "val", "test"):
        for c in ("LY", "PMY"):
            for i in range(3):
                seed += 1
                _jpeg(root / split / c / f"{c}_{split}{i}.jpg", seed)
    (root / "test" / "LY" / "LY_leak.jpg").write_bytes((root / "train" / "LY" / "LY_train0.jpg").read_bytes())
    result = scan(root, workers=1, progress=False)
    assert result.layout == "split"
    assert {r.split for r in result.records} == {"train", "val", "test"}
    dropped = {d.path: d.reason for d in result.dropped}
    assert dropped == {"test/LY/LY_leak.jpg": "duplicate"}  # the train copy stays: no duplicate straddles splits
    _, test_only = load_sources(root, split="test", classes=("PMY",))
    assert {r.split for r in test_only} == {"test"} and {r.cls for r in test_only} == {"PMY"}


def test_class_tree_layout(tmp_path: Path):
    root = tmp_path / "classes"
    for c in ("BA", "pmy"):
        for i in range(4):
            _jpeg(root / c / f"img{i}.jpg", i + (10 if c == "BA" else 20))
    (root / "unknown").mkdir()
    result = scan(root, workers=1, progress=False)
    assert result.layout == "classes"
    assert sorted({r.cls for r in result.records}) == ["BA", "PMY"]
    assert result.ignored == ["unknown"]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.mkdir(), "no PBC layout"),
        (lambda p: (p / "holiday-photos").mkdir(parents=True), "no PBC layout"),
    ],
)
def test_bad_roots_fail_with_one_line(tmp_path: Path, make, message):
    root = tmp_path / "input"
    make(root)
    with pytest.raises(UserError, match=message) as err:
        scan(root, progress=False)
    assert "\n" not in str(err.value)


def test_too_small_to_split_and_out_inside_input(tmp_path: Path):
    root = tmp_path / "PBC"
    _jpeg(root / "basophil" / "BA_1.jpg", 1)
    with pytest.raises(UserError, match="at least 3"):
        prepare(root, tmp_path / "out", progress=False)
    for i in range(2, 5):
        _jpeg(root / "basophil" / f"BA_{i}.jpg", i)
    with pytest.raises(UserError, match="inside the PBC tree"):
        prepare(root, root / "prepared", progress=False)


def test_cli_prints_table_and_errors_in_one_line(messy_release: Path, tmp_path: Path):
    ok = run_cli("naturalize", "prepare", messy_release, "--out", tmp_path / "o", "--workers", 1)
    assert ok.returncode == 0, ok.stderr
    assert "PMY   promyelocyte" in ok.stdout and "duplicates 3" in ok.stdout
    with (tmp_path / "o" / "records.csv").open() as f:
        assert next(csv.reader(f)) == [
            "path",
            "class",
            "folder",
            "sha256",
            "width",
            "height",
            "mode",
            "split",
            "excluded",
        ]
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["layout"] == "release"
    bad = run_cli("naturalize", "prepare", tmp_path / "nope", "--out", tmp_path / "o2")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "does not exist" in bad.stderr
    bad_split = run_cli("naturalize", "prepare", messy_release, "--out", tmp_path / "o3", "--split", "0.9,0.2,0")
    assert bad_split.returncode == 2 and "--split" in bad_split.stderr


def test_per_class_cap_is_seeded_and_recorded(messy_release: Path, tmp_path: Path):
    a = prepare(messy_release, tmp_path / "a", per_class=4, seed=1, progress=False)
    prepare(messy_release, tmp_path / "b", per_class=4, seed=1, progress=False)
    assert {c: v["total"] for c, v in a["per_class"].items() if v["total"]} == {"BA": 4, "PMY": 4, "SNE": 4}
    assert a["per_class_cap"] == 4
    assert (tmp_path / "a" / "records.csv").read_bytes() == (tmp_path / "b" / "records.csv").read_bytes()


def test_a_folder_left_unread_is_named_by_prepare_segment_and_build(tmp_path: Path):
    """A release tree whose neutrophil folder a user renamed 'Neutrophils': its images are not read (not a release
    folder's name). prepare, segment on the raw tree and build used to drop them silently (only summary.json's
    `ignored` listed the folder); each now names it in one line with the fix. Loose non-image files are not named."""
    from naturalize.drawn import write_drawn_release

    pbc = write_drawn_release(tmp_path / "pbc", 4, progress=False)
    (pbc / "neutrophil").rename(pbc / "Neutrophils")
    runs = {
        "prepare": ("prepare", pbc, "--out", tmp_path / "p", "--workers", 1),
        "segment": ("segment", pbc, "--out", tmp_path / "b", "--classes", "LY", "--workers", 1, "--no-progress"),
        "build": ("build", "pbc11", "--pbc", pbc, "--out", tmp_path / "d", "--workers", 1),
    }
    for name, args in runs.items():
        proc = run_cli("naturalize", *args)
        assert proc.returncode == 0, (name, proc.stderr[-2000:])
        said = [line for line in (proc.stdout + proc.stderr).splitlines() if "Neutrophils" in line]
        assert len(said) == 1 and "not read" in said[0], (name, proc.stdout, proc.stderr)
        assert "README.txt" not in said[0] and "manifest.csv" not in said[0], said


def test_the_same_picture_in_other_bytes_is_a_duplicate(tmp_path: Path):
    """A smear JPEG re-saved as PNG, WebP or a JPEG of another quality holds other bytes: prepare kept both copies,
    so one could sit in train and the other in test. Now they are one picture: within a class one copy stays (in a
    split tree the train one), across classes every copy goes; a resized copy and other smears are not matched."""
    from naturalize.drawn import draw_image

    rng = np.random.default_rng(0)
    tree = tmp_path / "tree"
    smears = {f"{c}{i}": Image.fromarray(draw_image(c, rng)) for c in ("LY", "MO") for i in range(4)}
    for split, names in (("train", (0, 1)), ("val", (2,)), ("test", (3,))):
        for c in ("LY", "MO"):
            for i in names:
                (tree / split / c).mkdir(parents=True, exist_ok=True)
                smears[f"{c}{i}"].save(tree / split / c / f"{c}_{i}.jpg", quality=95)
    smear = Image.open(tree / "train" / "LY" / "LY_0.jpg")
    smear.save(tree / "test" / "LY" / "LY_0_copy.png")  # the train image re-saved as PNG, into test
    smear.save(tree / "val" / "LY" / "LY_0_q60.jpg", quality=60)  # ... and as a JPEG of another quality
    smear.resize((180, 182)).save(tree / "test" / "LY" / "LY_0_half.png")  # another picture: kept
    Image.open(tree / "train" / "MO" / "MO_1.jpg").save(tree / "val" / "LY" / "LY_mo.webp", quality=80)  # cross-class
    result = scan(tree, workers=1, progress=False)
    dropped = {d.path: d.reason for d in result.dropped}
    assert dropped == {
        "test/LY/LY_0_copy.png": "near_duplicate",
        "val/LY/LY_0_q60.jpg": "near_duplicate",
        "train/MO/MO_1.jpg": "duplicate_conflict",
        "val/LY/LY_mo.webp": "duplicate_conflict",
    }
    detail = next(d.detail for d in result.dropped if d.path == "test/LY/LY_0_copy.png")
    assert detail == "same picture (other bytes) as train/LY/LY_0.jpg"
    kept = {r.path for r in result.records}
    assert {"train/LY/LY_0.jpg", "test/LY/LY_0_half.png"} <= kept and len(kept) == 8
    summary = prepare(tree, tmp_path / "prep", progress=False)
    assert summary["re_encoded_copies"] == 2 and summary["duplicates_removed"] == 4
