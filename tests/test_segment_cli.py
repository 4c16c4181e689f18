"""`naturalize segment` with the classical backend on real sample images: the bank it writes, resume,
determinism across --workers, curation of a prepared directory, and the bad-input errors."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from naturalize.bank import Bank
from naturalize.fsio import UserError
from naturalize.testing import as_from_a_terminal
from naturalize.testing.cli import run_cli

N = 14  # images per test run: classes are taken in turn, so every class appears


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the `naturalize` command line as a user would."""
    proc = run_cli("naturalize", *args)
    if check and proc.returncode != 0:
        raise AssertionError(f"naturalize {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def classical(source: Path, out: Path) -> list[str]:
    """The words of `segment SOURCE --out OUT --backend classical` (options follow them)."""
    return ["segment", str(source), "--out", str(out), "--backend", "classical"]


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under `root`."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def assert_same_tree(a: Path, b: Path) -> None:
    """Both folders hold the same files with the same bytes (names the differing files otherwise)."""
    da, db = tree_digest(a), tree_digest(b)
    differ = sorted(k for k in da.keys() | db.keys() if da.get(k) != db.get(k))
    assert not differ, f"{len(differ)} files differ, e.g. {differ[:5]}"


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The one `error: ...` line a bad input must produce (exit code 2)."""
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def bank(sample_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A classical bank of N sample images made with two workers."""
    out = tmp_path_factory.mktemp("seg") / "bank"
    proc = cli(*classical(sample_root, out), "--limit", str(N), "--workers", "2", "--no-progress")
    assert "backend classical" in proc.stderr
    assert "img/s" not in proc.stderr and "reading images" not in proc.stderr  # --no-progress: no bar at all
    return out


def test_bank_is_valid_and_sprites_match_index(bank: Path) -> None:
    b = Bank.open(bank)
    assert b.meta["backend"] == "classical" and b.meta["format_version"] == 2
    assert len(b.curation) == N and len(b.backgrounds) == N
    counts = b.meta["counts"]
    assert counts["sources"] == N
    for kind in ("RBC", "WBC", "PLT"):
        assert counts["sprites"][kind] == sum(s.kind == kind for s in b.sprites)
    ids = [s.sprite_id for s in b.sprites]
    assert len(set(ids)) == len(ids)
    for s in b.sprites:
        rgba = b.load_sprite(s)
        assert rgba.shape == (s.y1 - s.y0, s.x1 - s.x0, 4), s.sprite_id
        alpha = rgba[:, :, 3]
        assert set(np.unique(alpha)) <= {0, 255}
        assert int((alpha == 255).sum()) == s.area
        # tight crop: the mask reaches all four sides of the sprite
        assert alpha[0].any() and alpha[-1].any() and alpha[:, 0].any() and alpha[:, -1].any()
        if s.touches_border:
            assert s.x0 <= 1 or s.y0 <= 1 or s.x1 >= 359 or s.y1 >= 359
        assert s.sprite_id.startswith(Path(s.source).stem + f"_{s.kind}_")
        # a sprite the gate passed is a PNG file, a rejected one only its mask (index.csv)
        assert s.has_png == (s.reason == "ok") and np.array_equal(b.load_mask(s), alpha == 255)
    assert any(not s.has_png for s in b.sprites) and any(s.has_png for s in b.sprites)
    # every file on disk is in an index (no strays), every indexed file is on disk
    on_disk = {p.relative_to(bank).as_posix() for p in bank.rglob("*.png") if p.parent.name != "qc"}
    assert on_disk == {s.relpath for s in b.sprites if s.has_png} | {g.relpath for g in b.backgrounds}


def test_every_sprite_is_the_cell_the_segmenter_cut_from_its_source(bank: Path, sample_root: Path) -> None:
    """load_sprite of a PNG row and of a mask-only (rejected) row alike: the segmenter's cell, cut from the source
    image as `crop_sprite` cuts it."""
    from naturalize.bank import KINDS
    from naturalize.segment import make_segmenter
    from naturalize.segment.cells import crop_sprite
    from naturalize.segment.run import read_rgb

    b = Bank.open(bank)
    segmenter = make_segmenter("classical")
    for cur in b.curation[:3]:
        rows = [s for s in b.sprites if s.source == cur["source"]]
        assert any(not s.has_png for s in rows), cur["source"]
        rgb = read_rgb(str(Path(b.meta["root"]) / cur["source"]))
        cells = sorted(
            segmenter(rgb, label=cur["label"]).cells, key=lambda c: (KINDS.index(c.kind), c.box[1], c.box[0])
        )
        assert len(cells) == len(rows)
        for c, s in zip(cells, rows):
            assert (c.kind, *c.box) == (s.kind, s.x0, s.y0, s.x1, s.y1)
            assert np.array_equal(b.load_sprite(s), crop_sprite(rgb, c.mask, c.box)), s.sprite_id
            assert np.array_equal(b.load_mask(s), c.mask[s.y0 : s.y1, s.x0 : s.x1] != 0), s.sprite_id


def test_a_rejected_sprite_without_its_source_image_is_one_clear_error(bank: Path, tmp_path: Path) -> None:
    from naturalize.fsio import UserError

    moved = tmp_path / "moved"
    shutil.copytree(bank, moved)
    meta = json.loads((moved / "bank.json").read_text())
    (moved / "bank.json").write_text(json.dumps(meta | {"root": str(tmp_path / "gone")}))
    b = Bank.open(moved)
    rejected = next(s for s in b.sprites if not s.has_png)
    with pytest.raises(UserError, match=r"cannot read .*gone.*keep the PBC folder"):
        b.load_sprite(rejected)
    assert b.load_mask(rejected).sum() == rejected.area  # the mask needs no source image
    assert b.load_sprite(b.select("RBC")[0]).shape[2] == 4  # passed sprites are files of their own


def as_version_1(bank: Path, out: Path) -> None:
    """Copy `bank` as a bank of format version 1 (every sprite a PNG file, no mask column), as naturalize wrote it
    before rejected sprites were stored as masks."""
    b = Bank.open(bank)
    shutil.copytree(bank, out)
    for s in b.sprites:
        if not s.has_png:
            (out / s.relpath).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(b.load_sprite(s)).save(out / s.relpath)
    rows = list(csv.DictReader((bank / "index.csv").open(newline="")))
    with (out / "index.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, [k for k in rows[0] if k != "mask"], extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    meta = json.loads((bank / "bank.json").read_text())
    data = (out / "index.csv").read_bytes()
    meta["files"]["index.csv"] = {"bytes": len(data), "rows": len(rows), "sha256": hashlib.sha256(data).hexdigest()}
    (out / "bank.json").write_text(json.dumps(meta | {"format_version": 1}))


def test_a_version_1_bank_is_read_gives_the_same_donors_and_is_never_resumed(
    bank: Path, sample_root: Path, tmp_path: Path
) -> None:
    from naturalize.compose.scenes import _eligible, make_donor

    old = tmp_path / "v1"
    as_version_1(bank, old)
    b1, b2 = Bank.open(old), Bank.open(bank)
    assert all(s.has_png for s in b1.sprites) and len(b1.sprites) == len(b2.sprites)
    for s1, s2 in zip(b1.sprites, b2.sprites):
        assert s1.sprite_id == s2.sprite_id and np.array_equal(b1.load_sprite(s1), b2.load_sprite(s2))
    # transplant donors: the same plate, labels of the kept cells and record from PNG files and from masks
    donors1, donors2 = _eligible(b1), _eligible(b2)
    assert donors1.keys() == donors2.keys() and donors1
    for source in sorted(donors1)[:4]:
        (p1, l1, r1), (p2, l2, r2) = make_donor(b1, *donors1[source]), make_donor(b2, *donors2[source])
        assert any(not s.has_png for s in donors2[source][2]), "a donor labels a rejected cell too"
        assert np.array_equal(p1, p2) and np.array_equal(l1, l2)
        assert {k: v for k, v in r1.items() if k != "rows"} == {k: v for k, v in r2.items() if k != "rows"}
    # a run never adds version 2 rows to a version 1 bank: refused untouched, --overwrite rebuilds it
    before = tree_digest(old)
    line = error_line(cli(*classical(sample_root, old), "--limit", str(N), "--no-progress", check=False))
    assert "format version 1" in line and "--overwrite" in line
    assert tree_digest(old) == before
    cli(*classical(sample_root, old), "--limit", str(N), "--workers", "2", "--no-progress", "--overwrite")
    assert_same_tree(old, bank)


def test_gate_keeps_no_nucleated_cell_and_counts_every_sprite(bank: Path, sample_boxes: Path) -> None:
    b = Bank.open(bank)
    gate = json.loads((bank / "bank.json").read_text())["counts"]["gate"]
    for kind in ("RBC", "WBC", "PLT"):
        rows = [s for s in b.sprites if s.kind == kind]
        assert sum(gate[kind].values()) == len(rows)
        assert gate[kind].get("ok", 0) == sum(s.reason == "ok" for s in rows) > 0
    assert {s.reason for s in b.select("RBC")} == {"ok"} and all(not s.touches_border for s in b.select("RBC"))
    # no red cell or platelet passed by the gate lies on an annotated white cell (OI-PBC boxes)
    from naturalize.segment.cells import box_iou

    for s in b.select("RBC") + b.select("PLT"):
        w, h = Image.open(sample_boxes.parent / s.source).size
        for line in (sample_boxes / f"{Path(s.source).stem}.txt").read_text().split("\n"):
            parts = line.split()
            if len(parts) == 5 and parts[0] not in ("8", "10"):
                cx, cy, bw, bh = (float(v) for v in parts[1:])
                wbc = ((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h)
                assert box_iou((s.x0, s.y0, s.x1, s.y1), wbc) < 0.3, f"{s.sprite_id} lies on a white cell"


def test_one_centred_white_cell_and_red_cells_per_image(bank: Path, sample_release: Path) -> None:
    b = Bank.open(bank)
    wbc_images = [r for r in b.curation if r["label"] != "PLT"]
    assert wbc_images
    centred = with_rbc = 0
    for row in wbc_images:
        wbcs = [s for s in b.sprites if s.source == row["source"] and s.kind == "WBC"]
        with_rbc += any(s.source == row["source"] for s in b.select("RBC"))
        if row["flags"] == "" and len(wbcs) == 1:
            w = wbcs[0]
            with Image.open(sample_release.parent / row["source"]) as im:
                cx, cy = im.width / 2, im.height / 2
            centred += w.x0 < cx < w.x1 and w.y0 < cy < w.y1
            assert w.label == row["label"]
    assert centred >= 0.8 * len(wbc_images)
    assert with_rbc >= 0.7 * len(wbc_images), "whole red cells are found in most images"
    # red cells look red, white-cell sprites hold purple nuclei
    rbc = b.load_sprite(b.select("RBC")[0])
    inside = rbc[rbc[:, :, 3] == 255][:, :3].astype(int)
    assert inside[:, 0].mean() > inside[:, 2].mean() - 5


def test_backgrounds_are_full_size_and_cell_free(bank: Path, sample_release: Path) -> None:
    b = Bank.open(bank)
    for g in b.backgrounds[:4]:
        plate = b.load_background(g)
        with Image.open(sample_release.parent / g.source) as im:
            src = np.asarray(im.convert("RGB"))
        assert plate.shape == src.shape and (g.width, g.height) == (src.shape[1], src.shape[0])
        wbc = [s for s in b.sprites if s.source == g.source and s.kind == "WBC"]
        for s in wbc:  # the white cell's purple is gone from the plate
            stain = [
                (a[s.y0 : s.y1, s.x0 : s.x1, 2].astype(int) - a[s.y0 : s.y1, s.x0 : s.x1, 1]).mean()
                for a in (plate, src)
            ]
            assert stain[0] < stain[1] - 10


def test_resume_after_interruption_gives_the_same_bank(bank: Path, sample_root: Path, tmp_path: Path) -> None:
    # an interrupted run: the last two images never committed, a half-written index row, a stray temp file
    cut = tmp_path / "cut"
    cli(*classical(sample_root, cut), "--limit", str(N - 2), "--workers", "1", "--no-progress")
    lost = [r["source"] for r in Bank.open(bank).curation[-2:]]
    with open(cut / "index.csv", "ab") as f:
        f.write(b"ERB_0_RBC_9,RBC,,ERB/ERB_0.jpg,1,2")
    lost_stem = Path(lost[0]).stem
    (cut / "sprites" / "RBC").mkdir(parents=True, exist_ok=True)
    (cut / "sprites" / "RBC" / f".{lost_stem}_RBC_0.png.123.tmp").write_bytes(b"partial")  # a killed write: goes
    (cut / "sprites" / "RBC" / f"{lost_stem}_RBC_99.png").write_bytes(b"orphan")  # a lost image's sprite: goes
    (cut / ".bank.json.4321.tmp").write_bytes(b"partial")  # bank.json's own temp (replace_bytes names a pid): goes
    (cut / "notes.txt").write_text("mine")  # a user's file beside the bank: the resume's clean-up leaves it
    (cut / ".draft.tmp").write_text("mine")  # a user's dot-file ending in .tmp too (only the bank's own temps go)
    (cut / ".index.csv.abc123de.tmp").write_bytes(b"partial")  # a temp of the killed run's index.csv write: goes
    # a user's files inside the bank's own folders, and a link to a file outside: a resume leaves them all
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"my crop outside")
    mine = {
        "sprites/notes.txt": b"mine",
        "sprites/WBC/LY/my-hand-made-crop.png": (bank / "qc" / "sprites.png").read_bytes()[:5000],
        "sprites/RBC/notes.txt": b"mine",
        "backgrounds/notes.txt": b"mine",
        "backgrounds/my-plate.png": b"my plate",  # named like a plate, but of no image of this run
    }
    for rel, data in mine.items():
        (cut / rel).parent.mkdir(parents=True, exist_ok=True)
        (cut / rel).write_bytes(data)
    (cut / "sprites" / "RBC" / "x_RBC_0.png").symlink_to(outside)
    b = Bank.open(cut)  # valid while interrupted: the uncommitted images are not part of it
    assert {r["source"] for r in b.curation}.isdisjoint(lost) and not any(s.source in lost for s in b.sprites)
    proc = cli(*classical(sample_root, cut), "--limit", str(N), "--workers", "1", "--no-progress")
    assert f"{N - 2} of {N} images already done" in proc.stderr
    assert (cut / "notes.txt").read_text() == "mine" and (cut / ".draft.tmp").read_text() == "mine"
    assert not (cut / ".index.csv.abc123de.tmp").exists()
    assert {rel: (cut / rel).read_bytes() for rel in mine} == mine
    assert (cut / "sprites" / "RBC" / "x_RBC_0.png").is_symlink() and outside.read_bytes() == b"my crop outside"
    notes = [ln for ln in proc.stderr.splitlines() if ln.startswith("note: left")]
    assert len(notes) == 1 and "6 file(s)" in notes[0], proc.stderr
    for rel in [*mine, "sprites/RBC/x_RBC_0.png", "notes.txt", ".draft.tmp"]:
        (cut / rel).unlink()
    assert_same_tree(cut, bank)  # byte-identical, with one worker instead of two


def _committed_images(out: Path) -> int:
    """Source images a bank in the making has committed (0 before its bank.json exists or while it is replaced)."""
    try:
        return len(Bank.open(out).curation)
    except UserError:
        return 0


def test_killed_run_resumes_to_the_same_bank(bank: Path, sample_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "naturalize.cli", *classical(sample_root, out)]
    args += ["--limit", str(N), "--workers", "1", "--no-progress"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if _committed_images(out) >= 3:  # committed: the curation row and bank.json's record of it (a row alone
            os.killpg(proc.pid, signal.SIGKILL)  # is dropped on reopening, as a kill between the two leaves it)
            break
        time.sleep(0.01)
    proc.wait()
    assert 3 <= len(Bank.open(out).curation) < N, "the run was not interrupted midway"
    cli(*classical(sample_root, out), "--limit", str(N), "--no-progress")
    assert_same_tree(out, bank)


def test_ctrl_c_stops_quietly_with_130(sample_root: Path, tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) mid-run with 2 workers: one 'interrupted'
    line and exit code 130, no traceback from the command or its workers."""
    args = [sys.executable, "-m", "naturalize.cli", *classical(sample_root, tmp_path / "b")]
    proc = subprocess.Popen(
        [*args, "--limit", "200", "--workers", "2", "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=as_from_a_terminal,
    )
    cur = tmp_path / "b" / "curation.csv"
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None and not (cur.exists() and cur.read_text().count("\n") >= 4):
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]
    assert err.strip().splitlines()[-1] == "interrupted; rerun the same command to resume"


def test_existing_output_is_protected(bank: Path, sample_root: Path, tmp_path: Path) -> None:
    before = tree_digest(bank)
    other = cli(*classical(sample_root, bank), "--limit", "2", "--split", "train", check=False)
    assert error_line(other)  # a raw release tree has no split
    # same bank, other settings (another input root): refused, untouched
    alt_root = tmp_path / "alt"
    (alt_root / "BNE").mkdir(parents=True)
    src = next((sample_root / "PBC_dataset_normal_DIB" / "neutrophil").glob("BNE_*.jpg"))
    shutil.copy(src, alt_root / "BNE" / src.name)
    proc = cli(*classical(alt_root, bank), check=False)
    assert "--overwrite" in error_line(proc)
    assert tree_digest(bank) == before
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("mine")
    proc = cli(*classical(alt_root, junk), "--overwrite", check=False)
    assert "not written by naturalize" in error_line(proc)
    assert [p.name for p in junk.iterdir()] == ["notes.txt"]
    # --overwrite replaces a bank, but not while its folders hold a file segment did not write (or a link)
    small = tmp_path / "small"
    shutil.copytree(bank, small)
    outside = tmp_path / "outside.txt"
    outside.write_text("mine, outside")
    (small / "sprites" / "WBC" / "my-crop.png").write_bytes(b"mine")
    (small / "qc" / "x_WBC_0.png").symlink_to(outside)
    before = tree_digest(small)
    proc = cli(*classical(alt_root, small), "--overwrite", "--no-progress", check=False)
    assert "qc/x_WBC_0.png was not written by naturalize segment (2 such file(s)" in error_line(proc)
    assert tree_digest(small) == before and outside.read_text() == "mine, outside"
    (small / "sprites" / "WBC" / "my-crop.png").unlink()
    (small / "qc" / "x_WBC_0.png").unlink()
    cli(*classical(alt_root, small), "--overwrite", "--no-progress")
    b = Bank.open(small)
    assert [r["source"] for r in b.curation] == [f"BNE/{src.name}"]
    assert len(list((small / "backgrounds").glob("*.png"))) == 1 and len(b.backgrounds) == 1
    assert {s.source for s in b.sprites} == {f"BNE/{src.name}"}


def test_bad_inputs_one_line_and_nothing_written(sample_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no PBC layout" in error_line(cli(*classical(empty, out), check=False))
    tree = tmp_path / "tree" / "BNE"
    tree.mkdir(parents=True)
    src = next((sample_root / "PBC_dataset_normal_DIB" / "neutrophil").glob("BNE_*.jpg"))
    shutil.copy(src, tree / src.name)
    line = error_line(cli("segment", str(tree.parent), "--out", str(out), "--classes", "PMY", check=False))
    assert "PMY" in line
    assert "unknown class" in error_line(
        cli("segment", str(tree.parent), "--out", str(out), "--classes", "XYZ", check=False)
    )
    assert "unknown backend" in error_line(
        cli("segment", str(tree.parent), "--out", str(out), "--backend", "magic", check=False)
    )
    assert not out.exists()


def test_bad_sam_settings_are_one_line_and_nothing_written(sample_root: Path, tmp_path: Path) -> None:
    """--sam-set NAME=VALUE is checked against SamParams (the line names the bad name or value and every valid name
    with its range), and SAM's settings are refused, not ignored, when the backend is classical (segment and build).
    All before a checkpoint is read: the one given here is not one."""
    out = tmp_path / "out"
    fake = tmp_path / "sam.pth"
    fake.write_bytes(b"not read: the settings are refused first")
    sam = ["segment", str(sample_root), "--out", str(out), "--backend", "sam", "--checkpoint", str(fake)]

    def line(*args: str) -> str:
        return error_line(cli(*args, check=False))

    bad = line(*sam, "--sam-set", "pred_iou=0.8")
    assert "no setting 'pred_iou'" in bad and "pred_iou_thresh (float 0.0..1.0, default 0.86)" in bad
    assert all(f in bad for f in ("points_per_side", "stability_thresh", "box_nms_thresh", "min_area", "max_area_frac"))
    assert "pred_iou_thresh=1.5 is not a number in 0.0..1.0" in line(*sam, "--sam-set", "pred_iou_thresh=1.5")
    assert "min_area=lots is not a whole number in 0..100000" in line(*sam, "--sam-set", "min_area=lots")
    assert "points_per_side=4.5 is not a whole number" in line(*sam, "--sam-set", "points_per_side=4.5")
    assert "stability_thresh=nan is not a number" in line(*sam, "--sam-set", "stability_thresh=nan")
    assert "'min_area' is not NAME=VALUE" in line(*sam, "--sam-set", "min_area")
    assert "given twice" in line(*sam, "--sam-set", "min_area=20", "--sam-set", "min_area=30")
    assert "disagree" in line(*sam, "--points", "8", "--sam-set", "points_per_side=4")
    classical_line = line(*classical(sample_root, out), "--sam-set", "min_area=40")
    assert "--sam-set is a SAM setting, but the backend is classical" in classical_line
    assert "--points is a SAM setting" in line(*classical(sample_root, out), "--points", "8")
    auto = line("segment", str(sample_root), "--out", str(out), "--sam-set", "min_area=40")  # auto -> classical
    assert "auto picks sam only with --checkpoint" in auto
    built = tmp_path / "dataset"
    build = ["build", "2k-pbc", "--pbc", str(sample_root), "--out", str(built), "--backend", "classical"]
    assert "--sam-set is a SAM setting" in line(*build, "--sam-set", "min_area=40")
    assert "no setting 'nms'" in line(*build, "--sam-set", "nms=0.5")
    assert not out.exists() and not built.exists() and not (tmp_path / ".work").exists()


def test_prepared_dir_train_split_and_curation(sample_root: Path, tmp_path: Path) -> None:
    prep = tmp_path / "prep"
    cli("prepare", str(sample_root), "--out", str(prep))
    out = tmp_path / "bank"
    cli(*classical(prep, out), "--split", "train", "--limit", "30", "--no-progress")
    before = {p.name: p.read_bytes() for p in prep.iterdir() if p.is_file()}
    with (prep / "records.csv").open(newline="") as f:
        records = {r["path"]: r for r in csv.DictReader(f)}
    b = Bank.open(out)
    assert all(records[r["source"]]["split"] == "train" for r in b.curation)
    dropped = {r["source"]: r["flags"] for r in b.curation if r["keep"] == "0"}
    assert dropped, "expected a multi-WBC image among 30 training images"
    assert all("multi_wbc" in f for f in dropped.values())
    # the prepared directory is an input: curation stays in the bank (build applies it to its own copy)
    assert not any(r["excluded"] for r in records.values())
    assert {p.name: p.read_bytes() for p in prep.iterdir() if p.is_file()} == before
    # a larger --limit extends a smaller one: 30 then 40 gives the bank 40 images, the first 30 unchanged
    cli(*classical(prep, out), "--split", "train", "--limit", "40", "--no-progress")
    again = Bank.open(out).curation
    assert len(again) == 40 and again[:30] == b.curation


def test_a_split_bank_is_not_resumed_once_its_images_moved_to_another_split(tmp_path: Path) -> None:
    """A training bank, then the records prepared again with another seed (`prepare --overwrite`): the rerun of
    the same segment command resumed the bank, keeping every old training image, some of them now val/test
    images, so composites made from it leaked them. It now stops naming such an image; --overwrite rebuilds it."""
    from naturalize.drawn import write_drawn_release
    from naturalize.records import read_records

    write_drawn_release(tmp_path / "pbc", 4, seed=0, progress=False)
    prep, bank = tmp_path / "prep", tmp_path / "bank"
    seg = (
        "segment",
        prep,
        "--out",
        bank,
        "--split",
        "train",
        "--backend",
        "classical",
        "--workers",
        1,
        "--no-progress",
    )
    assert run_cli("naturalize", "prepare", tmp_path / "pbc", "--out", prep, "--no-progress").returncode == 0
    assert run_cli("naturalize", *seg).returncode == 0
    old_train = {r["source"] for r in Bank.open(bank).curation}
    done = run_cli(
        "naturalize", "prepare", tmp_path / "pbc", "--out", prep, "--seed", 1, "--overwrite", "--no-progress"
    )
    assert done.returncode == 0, done.stderr
    split_of = {r.path: r.split for r in read_records(prep / "records.csv")}
    moved = sorted(p for p in old_train if split_of[p] != "train")
    assert moved, "seed 1 should move some training images out of train"
    before = sorted(p.relative_to(bank).as_posix() for p in bank.rglob("*"))
    r = run_cli("naturalize", *seg)
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and last.startswith("error: ") and "--overwrite" in last, r.stderr
    assert any(f"{p} (now {split_of[p]})" in last for p in moved), last
    assert sorted(p.relative_to(bank).as_posix() for p in bank.rglob("*")) == before  # nothing touched
    assert run_cli("naturalize", *seg, "--overwrite").returncode == 0
    assert {r["source"] for r in Bank.open(bank).curation} == {p for p, s in split_of.items() if s == "train"}


def test_a_bank_with_nearly_every_cell_rejected_is_a_warning(tmp_path: Path) -> None:
    """Images of a white-cell class holding no white cell (what a SAM checkpoint of random weights gives: no white
    cell found, every other cell refused by the gate) -> one `warning:` line naming the bank and its QC page; a
    bank whose cells pass gives none."""
    from naturalize.testing.drawnbank import drawn_scene

    for cls, drawn in (("SNE", "PLT"), ("LY", "LY")):  # SNE images drawn without their white cell
        (tmp_path / cls / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(drawn_scene(drawn, i, 0, rbc=5)[1]).save(tmp_path / cls / cls / f"{cls}_{i}.png")
    proc = cli(*classical(tmp_path / "SNE", tmp_path / "bank-sne"), "--workers", "1", "--no-progress")
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("warning:")]
    assert "kept 0 of its" in line and "no white cell was found in 2 of its 2 white-cell images" in line
    assert str(tmp_path / "bank-sne" / "qc" / "index.html") in line
    proc = cli(*classical(tmp_path / "LY", tmp_path / "bank-ly"), "--workers", "1", "--no-progress")
    assert "warning" not in proc.stderr and "kept RBC" in proc.stdout
