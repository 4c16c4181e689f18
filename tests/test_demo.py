"""`naturalize demo`: the whole pipeline at its smallest size, its report, and its input checks."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from naturalize.classes import CLASSES
from naturalize.demo.pipeline import real_subset, run_demo
from naturalize.demo.report import SECTIONS
from naturalize.fsio import UserError
from naturalize.testing.cli import run_cli


@pytest.mark.slow
def test_demo_small_runs_end_to_end_and_reports_every_section(tmp_path: Path) -> None:
    lines: list[str] = []
    report = run_demo(tmp_path / "demo", size="small", progress=False, echo=lines.append)
    out = tmp_path / "demo"
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
