"""`naturalize demo`: the whole pipeline at its smallest size, its report, and its input checks."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from naturalize.classes import CLASSES
from naturalize.demo.pipeline import OUTPUTS, _check_out, foreign_files, real_subset, run_demo
from naturalize.demo.report import SECTIONS
from naturalize.fsio import UserError
from naturalize.testing.cli import run_cli


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory) -> tuple[Path, Path, list[str]]:
    """One finished drawn demo at its smallest size, shared by this module's tests: (OUT, report, printed lines).
    Tests that change it work on a copy (shutil.copytree)."""
    out = tmp_path_factory.mktemp("demo") / "demo"
    lines: list[str] = []
    report = run_demo(out, size="small", progress=False, echo=lines.append)
    return out, report, lines


@pytest.mark.slow
def test_demo_small_runs_end_to_end_and_reports_every_section(small_demo) -> None:
    out, report, lines = small_demo
    assert report == out / "report.html" and report.is_file()
    page = report.read_text(encoding="utf-8")
    for section in SECTIONS:
        assert f'<section id="{section}">' in page, section
    assert "DRAWN DATA" in page and "not real blood cells" in page
    # every linked picture exists beside the page, and is embedded in it as well
    hrefs = re.findall(r'href="([^"]+\.png)"', page)
    assert len(hrefs) >= 9  # 2 segmentation sheets, 5 contact sheets, curves, confusion matrix
    assert {"figures/segmentation_plates.png", "figures/segmentation_sprites.png"} <= set(hrefs)
    assert "best epoch" in page and "<pre>" not in page  # report as a table, not a wide text block
    assert not (out / "compose").exists()  # each class composed once, by build, into dataset/synthetic/
    for h in hrefs:
        assert (out / h).is_file(), h
    assert page.count("data:image/png;base64,") == len(hrefs)
    # the printed last line says where the report is
    assert lines[-1].endswith(str(report.resolve()))
    meta = json.loads((out / "demo.json").read_text())
    assert meta["done"] and [t["stage"] for t in meta["timings"]] == [
        "draw",
        "prepare",
        "segment",
        "build",
        "train",
        "evaluate",
        "sheets",
        "report",
    ]  # composes once, in build
    assert 0.0 <= meta["test_macro_f1"] <= 1.0
    assert meta["test_accuracy"] > 2 / len(CLASSES)  # it learns: 8 epochs once left it at chance (1/11)
    assert f"chance with {len(CLASSES)} classes: 0.091" in page
    # clean protocol: val and test hold only source images, synthetic ones only in train
    with (out / "dataset" / "files.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {r["split"] for r in rows if r["origin"] == "synthetic"} == {"train"}
    assert {r["origin"] for r in rows if r["split"] in ("val", "test")} == {"real"}
    assert len(list((out / "drawn-pbc").rglob("*.jpg"))) == 12 * len(CLASSES)
    # the sheet of images curation removed labels each row with its own images' flags (not all flags on one row)
    from PIL import Image

    rejected = out / "figures" / "segmentation_rejected.png"
    if rejected.is_file():
        flags = {}
        for curation in out.rglob("curation.csv"):
            with curation.open() as f:
                flags |= {r["source"]: set(filter(None, r["flags"].split(";"))) for r in csv.DictReader(f)}
        with Image.open(rejected) as im:
            rows = json.loads(im.text["provenance"])["rows"]
        for label, paths in rows.items():
            for path in paths:
                source = next(s for s in flags if path.endswith(s))
                assert flags[source] == set(label.split("\n")), (label, path)


def test_demo_refuses_a_folder_that_holds_something_else(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(UserError, match="--out"):
        run_demo(tmp_path, size="small", progress=False, echo=lambda *_: None)
    with pytest.raises(UserError, match="not empty and was not written by naturalize"):
        run_demo(tmp_path, size="small", overwrite=True, progress=False, echo=lambda *_: None)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_demo_cli_bad_size_is_one_line_error(tmp_path: Path) -> None:
    proc = run_cli("naturalize", "demo", "--size", "huge", "--out", tmp_path / "d", timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: unknown --size 'huge'; use one of small, default"]


def test_demo_missing_pbc_is_one_line_error(tmp_path: Path) -> None:
    proc = run_cli("naturalize", "demo", "--pbc", tmp_path / "nope", "--out", tmp_path / "d", timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "nope" in lines[0] and "does not exist" in lines[0]
    assert not (tmp_path / "d").exists()


def test_real_subset_links_a_seeded_per_class_sample(sample_release: Path, tmp_path: Path) -> None:
    from naturalize.records import scan

    a = real_subset(sample_release, tmp_path / "a", per_class=3, seed=1)
    b = real_subset(sample_release, tmp_path / "b", per_class=3, seed=1)
    files = sorted(p.relative_to(a).as_posix() for p in a.rglob("*.jpg"))
    assert files == sorted(p.relative_to(b).as_posix() for p in b.rglob("*.jpg"))
    result = scan(a, workers=1, progress=False)
    assert result.layout == "release"
    counts = {c: sum(r.cls == c for r in result.records) for c in CLASSES}
    assert all(n == 3 for n in counts.values()), counts
    assert all(p.resolve().is_relative_to(sample_release.resolve()) for p in a.rglob("*.jpg"))


def test_real_subset_made_again_keeps_a_users_file_and_refuses(sample_release: Path, tmp_path: Path) -> None:
    """The demo's rerun makes its PBC subset again: it used to remove the folder whole, with the user's files in it;
    it now removes only its own links and refuses (exit 2 in the CLI) while anything else is there."""
    a = real_subset(sample_release, tmp_path / "a", per_class=2, seed=1)
    made = sorted(p.relative_to(a).as_posix() for p in a.rglob("*"))
    outside = tmp_path / "outside.txt"
    outside.write_text("mine, outside")
    folder = next(p for p in sorted(a.iterdir()) if p.is_dir())
    (folder / "notes.txt").write_text("mine")
    (a / "my-link.jpg").symlink_to(outside)
    with pytest.raises(UserError, match="notes.txt was not written by naturalize demo"):
        real_subset(sample_release, a, per_class=2, seed=1)
    assert (folder / "notes.txt").read_text() == "mine" and (a / "my-link.jpg").is_symlink()
    assert outside.read_text() == "mine, outside"
    (folder / "notes.txt").unlink()
    (a / "my-link.jpg").unlink()
    assert (
        sorted(p.relative_to(real_subset(sample_release, a, per_class=2, seed=1)).as_posix() for p in a.rglob("*"))
        == made
    )


def _digests(root: Path) -> dict[str, str]:
    """Every file and link under `root` (links by their target path, never followed) -> its SHA-256."""
    found = {}
    for here, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(here) / name
            if p.is_symlink():
                found[p.relative_to(root).as_posix()] = "link to " + os.readlink(p)
            elif p.is_file():
                found[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return found


def _overwrite_removes_it_all(out: Path) -> None:
    """--overwrite's first step on OUT (the demo's own settings, as the command runs it): nothing is refused, the
    demo's outputs are all gone, a user's file beside them stays."""
    (out / "my-notes.txt").write_text("mine, beside the demo")
    settings = json.loads((out / "demo.json").read_text())["settings"]
    _check_out(out, settings, True, Path(settings["pbc"]) if settings["pbc"] else None)
    assert sorted(p.name for p in out.iterdir()) == [".naturalize-output.json", "my-notes.txt"]
    assert (out / "my-notes.txt").read_text() == "mine, beside the demo"


@pytest.mark.slow
def test_demo_overwrite_refuses_a_users_file_or_link_in_any_folder_it_removes(small_demo, tmp_path: Path) -> None:
    """`demo --overwrite` removed its folders whole (dataset/, work/, run/, figures/, cache/, ...), a user's file in
    them too; it now refuses, naming it, with nothing removed, and still replaces a demo that holds only its own."""
    out = tmp_path / "demo"
    shutil.copytree(small_demo[0], out, symlinks=True)
    shutil.copytree(out / "dataset" / "synthetic", out / "compose", symlinks=True)  # what a demo of 2026-11-29 wrote
    assert foreign_files(out) == []
    (out / "my-notes.txt").write_text("mine, beside the demo")
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"mine, outside")
    cases = {
        rel: lambda p: p.write_text("mine")
        for rel in (
            "cache/notes.txt",
            "compose/PMY/notes.txt",
            "dataset/notes.txt",
            "dataset/train/PMY/notes.txt",
            "dataset/synthetic/PMY/notes.txt",
            "drawn-pbc/ig/notes.txt",
            "figures/notes.txt",
            "run/notes.txt",
            "run/eval/test/notes.txt",
            "work/notes.txt",
            "work/prepared/notes.txt",
            "work/bank-train/sprites/WBC/notes.txt",
        )
    }
    cases["figures/sheet_ERB.png"] = lambda p: p.symlink_to(outside)  # a link named as the demo's own file
    cases["dataset/train/PMY/linked"] = lambda p: p.symlink_to(tmp_path, target_is_directory=True)
    for rel, make in cases.items():
        make(out / rel)
        before = _digests(out)
        with pytest.raises(UserError, match=f"{re.escape(str(out / rel))} was not written by naturalize demo"):
            run_demo(out, size="small", overwrite=True, progress=False, echo=lambda *_: None)
        assert _digests(out) == before, rel
        assert outside.read_bytes() == b"mine, outside"
        (out / rel).unlink()
    (out / "run" / "notes.txt").write_text("mine")
    proc = run_cli("naturalize", "demo", "--out", out, "--overwrite", "--size", "small", timeout=120)
    assert proc.returncode == 2 and (out / "run" / "notes.txt").read_text() == "mine"
    assert proc.stderr.strip().splitlines() == [
        f"error: {out / 'run' / 'notes.txt'} was not written by naturalize demo (1 such file(s) in the folders of "
        f"{out} that --overwrite removes); nothing was removed: move them out of {out}, then rerun"
    ]
    (out / "run" / "notes.txt").unlink()
    _overwrite_removes_it_all(out)


@pytest.mark.slow
def test_demo_on_real_images_holds_only_its_own_files_for_overwrite(sample_root: Path, tmp_path: Path) -> None:
    """A finished `demo --pbc` (links to the real images in pbc-subset/) passes --overwrite's check: its dataset used
    to hold links (hard links of those links), which build's rerun refused as not its own."""
    out = tmp_path / "demo"
    run_demo(out, pbc=sample_root, size="small", progress=False, echo=lambda *_: None)
    assert foreign_files(out) == []
    assert not [p for p in (out / "dataset").rglob("*") if p.is_symlink()]
    assert {p.name for p in out.iterdir()} >= set(OUTPUTS) - {"compose", "drawn-pbc"}
    _overwrite_removes_it_all(out)


def test_the_rules_of_the_demo_folders_name_only_their_own_files() -> None:
    """The names no small demo run writes (temporary files, explain's PNGs, other classes' sheets) are the tool's; a
    user's file of a similar name is not."""
    from classify.images import written_by_cache
    from naturalize.demo.pipeline import _written_by_classify as written_by_train
    from naturalize.demo.sheets import written_by_sheets

    for rel in ("model.keras", ".last.keras.ab12cd34.keras", ".history.csv.ab12cd34.tmp", "eval/val/confusion.png"):
        assert written_by_train(rel), rel
    assert written_by_train("explain/LY/LY_1_scorecam.png") and written_by_train("explain/.x_scorecam.png.ab12cd34.tmp")
    for rel in ("notes.txt", "model.keras.bak", "eval/report.txt", "eval/test/notes.txt", "explain/LY/x.png", "x/y"):
        assert not written_by_train(rel), rel
    key = "0123456789abcdef0123"
    assert written_by_cache(f"{key}_64.npy") and written_by_cache(f".{key}_64.npy.ab12cd34.tmp")
    assert not written_by_cache("mine.npy") and not written_by_cache(f"sub/{key}_64.npy")
    assert written_by_sheets("sheet_LY.png") and written_by_sheets("segmentation_rejected.png")
    assert not written_by_sheets("sheet_XX.png") and not written_by_sheets("notes.txt")
