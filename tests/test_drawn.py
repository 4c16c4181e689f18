"""The drawn demo smear set: deterministic, laid out like the PBC release, and segmentable."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from naturalize.classes import CLASSES
from naturalize.drawn import draw_image, image_rng, write_drawn_release, written_by_drawing
from naturalize.fsio import UserError


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes_in_any_number_of_processes_and_other_seed_differs(tmp_path: Path) -> None:
    a = write_drawn_release(tmp_path / "a", 6, seed=3, progress=False)
    b = write_drawn_release(tmp_path / "b", 6, seed=3, progress=False, workers=2)
    c = write_drawn_release(tmp_path / "c", 6, seed=4, progress=False)
    assert _digests(a) == _digests(b)
    jpgs = [k for k in _digests(a) if k.endswith(".jpg")]
    assert len(jpgs) == 6 * len(CLASSES)
    assert all(_digests(a)[k] != _digests(c)[k] for k in jpgs)


def test_tree_reads_as_a_pbc_release_and_says_it_is_drawn(tmp_path: Path) -> None:
    from naturalize.records import scan

    root = write_drawn_release(tmp_path / "drawn-pbc", 2, seed=0, progress=False)
    result = scan(root, workers=1, progress=False)
    assert result.layout == "release"
    assert sorted(r.cls for r in result.records) == sorted(CLASSES * 2)
    assert {(r.width, r.height) for r in result.records} == {(360, 363)}
    assert (root / "ig" / "PMY_drawn_0001.jpg").is_file() and (root / "platelet" / "PLATELET_drawn_0002.jpg").is_file()
    assert "NOT REAL" in (root / "README.txt").read_text().upper()
    with Image.open(root / "lymphocyte" / "LY_drawn_0001.jpg") as im:
        assert b"NOT a real smear" in im.info["comment"]


def test_rerun_resumes_and_other_parameters_refuse(tmp_path: Path) -> None:
    out = tmp_path / "d"
    write_drawn_release(out, 1, seed=0, progress=False)
    victim = out / "lymphocyte" / "LY_drawn_0001.jpg"
    victim.unlink()
    write_drawn_release(out, 1, seed=0, progress=False)  # resumes: the missing file is drawn again
    assert victim.is_file()
    with pytest.raises(UserError, match="other parameters"):
        write_drawn_release(out, 1, seed=1, progress=False)


def test_classical_segmenter_finds_the_centred_white_cell_and_red_cells() -> None:
    from naturalize.segment.classical import segment_classical

    for cls in CLASSES:
        for i in range(2):
            rgb = draw_image(cls, image_rng(0, cls, i))
            seg = segment_classical(rgb)
            wbc = seg.of_kind("WBC")
            if cls == "PLT":
                assert not wbc
                continue
            assert len(wbc) == 1, (cls, i)
            x0, y0, x1, y1 = wbc[0].box
            assert abs((x0 + x1) / 2 - 180) < 20 and abs((y0 + y1) / 2 - 181) < 20
            assert len(seg.of_kind("RBC", usable_only=True)) >= 4, (cls, i)


def test_red_cells_have_central_pallor() -> None:
    from naturalize.drawn import rbc_patch

    rgb, alpha = rbc_patch(np.random.default_rng(0), 33.0)
    c = rgb.shape[0] // 2
    centre = rgb[c - 3 : c + 4, c - 3 : c + 4].mean()
    ring = rgb[c, c + 22 : c + 26].mean()
    assert centre > ring + 10 and alpha[c, c] == pytest.approx(1.0) and alpha[0, 0] == 0.0


def test_overwrite_removes_only_what_it_drew_and_refuses_a_users_file_or_link(tmp_path: Path) -> None:
    """overwrite=True removed the class folders whole, with a user's file in them; it now refuses (nothing removed)
    while a class folder holds a file it did not draw or a link, and otherwise replaces the set, leaving other files."""
    out = write_drawn_release(tmp_path / "d", 1, seed=0, progress=False)
    assert all(written_by_drawing(rel) for rel in _digests(out) if rel != ".naturalize-output.json")
    (out / "my-notes.txt").write_text("mine, beside the set")
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"mine, outside")
    for rel, make in (
        ("lymphocyte/notes.txt", lambda p: p.write_text("mine")),
        ("ig/LY_drawn_0001.jpg", lambda p: p.write_bytes(b"mine, named as a drawn image of another folder")),
        ("platelet/PLATELET_drawn_0001.jpg.link", lambda p: p.symlink_to(outside)),
        ("monocyte/linked", lambda p: p.symlink_to(tmp_path, target_is_directory=True)),
    ):
        make(out / rel)
        before = _digests(out)
        with pytest.raises(UserError, match=f"{rel} was not written by naturalize .drawn.*nothing was removed"):
            write_drawn_release(out, 1, seed=1, overwrite=True, progress=False)
        assert _digests(out) == before and os.path.lexists(out / rel)
        assert outside.read_bytes() == b"mine, outside"
        (out / rel).unlink()
    write_drawn_release(out, 1, seed=1, overwrite=True, progress=False)
    fresh = write_drawn_release(tmp_path / "fresh", 1, seed=1, progress=False)
    assert _digests(out) == {**_digests(fresh), "my-notes.txt": _digests(out)["my-notes.txt"]}
    assert (out / "my-notes.txt").read_text() == "mine, beside the set"


def test_written_by_drawing_names_only_the_drawn_files() -> None:
    assert written_by_drawing("lymphocyte/LY_drawn_0001.jpg") and written_by_drawing("platelet/PLATELET_drawn_0012.jpg")
    assert written_by_drawing("ig/.PMY_drawn_0003.jpg.ab12cd34.tmp") and written_by_drawing("manifest.csv")
    for rel in (
        "ig/LY_drawn_0001.jpg",
        "lymphocyte/LY_drawn_1.jpg",
        "lymphocyte/LY_drawn_0000.jpg",
        "lymphocyte/x.jpg",
    ):
        assert not written_by_drawing(rel), rel
    assert not written_by_drawing("lymphocyte/sub/LY_drawn_0001.jpg") and not written_by_drawing("notes.txt")
