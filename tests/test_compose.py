"""`naturalize compose` / `preview`: layout, masks, determinism, shards, resume, bad input (the paper scene's
layout and masks; the default scene runs the determinism, shard and resume tests; tests/test_scenes.py: scenes).

A small sprite bank is cut from real sample images with their OI-PBC boxes (naturalize/testing/boxbank.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from naturalize.bank import Bank
from naturalize.compose.annotate import label_rles
from naturalize.compose.core import compose_image
from naturalize.compose.library import load_library
from naturalize.compose.params import ComposeParams, shard_range
from naturalize.compose.preview import contact_sheet
from naturalize.compose.run import STATE_DIR, compose_class
from naturalize.fsio import UserError
from naturalize.testing.boxbank import make_box_bank, pick_images
from naturalize.testing.oracles import coco, manifest_entry


@pytest.fixture(scope="session")
def bank(sample_release: Path, sample_boxes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bank of 6 PMY, 3 LY and 2 platelet images of the sample (no BA)."""
    images = pick_images(sample_release, sample_boxes, {"PMY": 6, "LY": 3, "PLT": 2})
    return make_box_bank(sample_release, sample_boxes, images, tmp_path_factory.mktemp("bank"))


def _files(root: Path) -> dict[str, bytes]:
    """Every output file -> bytes (not the run's private journal, nor the hidden temporary file a killed
    write may leave)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and STATE_DIR not in p.parts and not p.name.startswith(".")
    }


def _compose_pmy(bank: Path, n: int, *more: str) -> list[str]:
    """The command line (through naturalize.cli.main) composing `n` PMY images from `bank`, options `more` last."""
    main = [sys.executable, "-c", "from naturalize.cli import main; main()"]
    return [*main, "compose", "--class", "PMY", "--n", str(n), "--bank", str(bank), *more]


def _placed_mask(cell, width: int, height: int) -> np.ndarray:
    """A placed cell's whole mask (before later cells cover it) in image coordinates."""
    full = np.zeros((height + 2 * 200, width + 2 * 200), bool)
    h, w = cell.mask.shape
    full[200 + cell.y : 200 + cell.y + h, 200 + cell.x : 200 + cell.x + w] = cell.mask > 0
    return full[200 : 200 + height, 200 : 200 + width]


def test_white_cell_centred_and_touched_by_nothing(bank: Path) -> None:
    p = ComposeParams(rbc=16, platelets=(1, 3))  # crowded, as the densest real crops
    lib = load_library(Bank.open(bank), "PMY", 0, p)
    W, H = p.size
    dists, n_small = [], 0
    for i in range(40):
        comp = compose_image(lib, np.random.default_rng([0, 9, i]), p)
        (white,) = [c for c in comp.cells if c.role == "centre"]
        wm = _placed_mask(white, W, H)
        grown = cv2.dilate(wm.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0  # the 2-px margin holds at 1 px
        for c in comp.cells:
            if c is not white:
                assert not (grown & _placed_mask(c, W, H)).any(), f"image {i}: a {c.role} touches the white cell"
                n_small += 1
        ys, xs = np.nonzero(wm)
        dists.append(np.hypot(xs.mean() - W / 2, ys.mean() - H / 2))
    assert n_small > 40 * 10, "the red cells did not fit around the white cell"
    assert max(dists) < 60 and np.median(dists) < 12, dists


def test_red_cells_may_be_cut_by_the_border_and_touch(bank: Path) -> None:
    p = ComposeParams(rbc=16)
    lib = load_library(Bank.open(bank), "PMY", 0, p)
    W, H = p.size
    cut = touching = 0
    for i in range(20):
        comp = compose_image(lib, np.random.default_rng([0, 9, i]), p)
        reds = [c for c in comp.cells if c.role == "RBC"]
        for c in reds:
            h, w = c.mask.shape
            cut += c.x < 0 or c.y < 0 or c.x + w > W or c.y + h > H
            m = _placed_mask(c, W, H)
            for o in reds:
                if o is not c:
                    overlap = (m & _placed_mask(o, W, H)).sum()
                    assert overlap <= p.rbc_overlap * max(np.count_nonzero(c.mask), np.count_nonzero(o.mask))
                    touching += overlap > 0
    assert cut > 0 and touching > 0


def test_coco_masks_are_the_changed_pixels(bank: Path, tmp_path: Path) -> None:
    p = ComposeParams(fmt="png", scene="paper")
    compose_class(bank, "PMY", 6, tmp_path, seed=3, params=p, workers=1, progress=False)
    gt = COCO(str(tmp_path / "annotations.json"))
    lib = load_library(Bank.open(bank), "PMY", 3, p)
    plates = {r.background_id: plate for r, plate in zip(lib.plate_rows, lib.plates)}
    manifest = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert [m["index"] for m in manifest] == list(range(6))
    assert {c["name"] for c in gt.loadCats(gt.getCatIds())} >= {"RBC", "PLT", "PMY", "SNE"}
    for img_info, m in zip(gt.loadImgs(gt.getImgIds()), manifest):
        assert img_info["file_name"] == m["file"]
        image = cv2.imread(str(tmp_path / m["file"]), cv2.IMREAD_COLOR)
        changed = (image != plates[m["background"]["id"]]).any(axis=2)
        anns = gt.loadAnns(gt.getAnnIds(imgIds=img_info["id"]))
        assert len(anns) == sum("rle" in c or "bbox" in c for c in m["cells"]) >= 1 + p.rbc - 2
        union = np.zeros_like(changed)
        for a in anns:
            mk = gt.annToMask(a).astype(bool)
            assert not (union & mk).any(), "two annotations claim the same pixel"
            union |= mk
            x, y, w, h = a["bbox"]
            ys, xs = np.nonzero(mk)
            assert (x, y, w, h) == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        assert changed[union].mean() > 0.98  # a cell pixel can equal the plate by chance
        near = cv2.dilate(union.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0  # feathered edges
        near[:3], near[-3:], near[:, :3], near[:, -3:] = True, True, True, True  # edges of cells cut by the border
        assert not (changed & ~near).any(), "pixels changed outside every annotated cell"


def test_label_rles_match_pycocotools() -> None:
    rng = np.random.default_rng(0)
    H, W = 37, 29
    labels = np.zeros((H, W), np.uint8)
    for n, (x0, y0, h, w) in enumerate(
        [(0, 0, 5, 7), (22, 30, 7, 7), (3, 4, 10, 1), (0, 10, 27, 29), (28, 36, 1, 1)], 1
    ):
        vis = rng.random((h, w)) < 0.6
        vis[0, 0] = True
        labels[y0 : y0 + h, x0 : x0 + w][vis] = n  # later labels cover earlier ones, as later cells do
    labels[-1, -1] = 5  # a run to the last pixel
    got = label_rles(labels, 7)
    assert got[5:] == [None, None]
    for n, (counts, box, area) in enumerate(got[:5], 1):
        full = np.asfortranarray(labels == n).astype(np.uint8)
        rle = mask_utils.encode(full)
        ys, xs = np.nonzero(full)
        assert counts == rle["counts"].decode()
        assert box == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1] and area == full.sum()


def test_same_seed_same_bytes_shards_and_resume(bank: Path, tmp_path: Path) -> None:
    kw = dict(seed=7, progress=False)
    whole, again, sharded = tmp_path / "whole", tmp_path / "again", tmp_path / "sharded"
    paths = compose_class(bank, "PMY", 70, whole, workers=2, **kw)
    assert [q.name for q in paths] == [f"PMY_syn_7_{i}.jpg" for i in range(70)]
    compose_class(bank, "PMY", 70, again, workers=1, **kw)
    assert _files(whole) == _files(again)
    first = compose_class(bank, "PMY", 70, sharded, shard=(1, 2), workers=1, **kw)
    second = compose_class(bank, "PMY", 70, sharded, shard=(2, 2), workers=1, **kw)
    assert [q.name for q in first + second] == [q.name for q in paths] and len(first) == 35
    assert _files(sharded) == _files(whole)
    # an interrupted run: some images and all records gone; the rerun makes exactly the same files
    before = _files(whole)
    for q in paths[5:12]:
        q.unlink()
    shutil.rmtree(whole / STATE_DIR / "journal")
    (whole / "manifest.jsonl").unlink()
    compose_class(bank, "PMY", 70, whole, workers=1, **kw)
    assert _files(whole) == before
    # a second class joins the same folder; a third seed's image 0 differs
    compose_class(bank, "LY", 4, whole, workers=1, **kw)
    lines = (whole / "manifest.jsonl").read_text().splitlines()
    assert [json.loads(line)["class"] for line in lines] == ["LY"] * 4 + ["PMY"] * 70
    other = compose_class(bank, "PMY", 1, tmp_path / "seed8", seed=8, workers=1, progress=False)
    assert other[0].read_bytes() != paths[0].read_bytes()


def test_library_warmed_on_threads_composes_the_same_images(bank: Path) -> None:
    """A long run's library (read on threads, every variant warped up front) gives the images a lazily
    warped one does."""
    p = ComposeParams()
    lazy = load_library(Bank.open(bank), "PMY", 0, p)
    warm = load_library(Bank.open(bank), "PMY", 0, p, threads=2, warm=True)
    assert len(warm.rbc._warped) == sum(map(len, warm.rbc.transforms)) and not lazy.rbc._warped
    for i in range(5):
        a, b = (compose_image(lib, np.random.default_rng([0, 9, i]), p) for lib in (lazy, warm))
        assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)


def test_spawned_workers_make_the_same_files(bank: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where workers cannot be forked (not Linux) each spawned worker reads the bank itself: same files."""
    from naturalize.compose import run

    forked = compose_class(bank, "PMY", 70, tmp_path / "forked", seed=4, workers=2, progress=False)
    monkeypatch.setattr(run, "FORK_WORKERS", False)
    spawned = compose_class(bank, "PMY", 70, tmp_path / "spawned", seed=4, workers=2, progress=False)
    assert _files(forked[0].parents[1]) == _files(spawned[0].parents[1])


def test_run_files_are_the_records_serialised(bank: Path, tmp_path: Path) -> None:
    """The run files joined from journal text equal the records dumped whole; a journal line cut short
    (an interrupted write) is skipped and its image made again, the others are not remade."""
    from naturalize.compose.annotate import JSON_SEPARATORS, coco_text, journal_entry
    from naturalize.compose.run import journal_line, render

    out = tmp_path / "run"
    paper = ComposeParams(scene="paper")
    compose_class(bank, "PMY", 5, out, seed=2, params=paper, workers=1, progress=False)
    before = _files(out)
    lib = load_library(Bank.open(bank), "PMY", 2, paper)
    records = [render(lib, paper, 2, i)[1] for i in range(5)]
    dump = lambda obj: json.dumps(obj, sort_keys=True, separators=JSON_SEPARATORS)  # noqa: E731
    assert before["annotations.json"].decode() == dump(coco(records)) == coco_text([journal_entry(r) for r in records])
    assert before["manifest.jsonl"].decode() == "".join(dump(manifest_entry(r)) + "\n" for r in records)
    lines = [journal_line(journal_entry(r)) for r in records]
    shutil.rmtree(out / STATE_DIR / "journal")
    (out / STATE_DIR / "journal").mkdir()
    (out / STATE_DIR / "journal" / "PMY.host.1.jsonl").write_text("".join(lines[:4]) + lines[4][:-40])
    (out / "annotations.json").unlink()
    stamps = [(out / "PMY" / f"PMY_syn_2_{i}.jpg").stat().st_mtime_ns for i in (0, 4)]
    compose_class(bank, "PMY", 5, out, seed=2, params=paper, workers=1, progress=False)
    assert _files(out) == before
    assert (out / "PMY" / "PMY_syn_2_0.jpg").stat().st_mtime_ns == stamps[0]
    assert (out / "PMY" / "PMY_syn_2_4.jpg").stat().st_mtime_ns != stamps[1]


def _race(root: Path, seeds: tuple[int, int], rounds: int) -> dict[int, list[tuple[int, str]]]:
    """Two processes claim ROOT/<round> for compose runs of `seeds` at the same instant, `rounds` times:
    round -> [(seed, 'claimed' or the refusal) of each process]."""
    import multiprocessing as mp

    from naturalize.testing.race import claim_rounds

    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(len(seeds)), ctx.Queue()
    procs = [ctx.Process(target=claim_rounds, args=(str(root), s, rounds, barrier, results)) for s in seeds]
    for p in procs:
        p.start()
    got = [results.get(timeout=120) for _ in range(len(seeds) * rounds)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    out: dict[int, list[tuple[int, str]]] = {}
    for r, seed, what in got:
        out.setdefault(r, []).append((seed, what))
    return out


def test_shards_of_other_seeds_started_at_one_instant_never_both_write(tmp_path: Path) -> None:
    """Two shards with different seeds started at the same instant into one new OUT both read "no run here yet" and
    both went on (2 of 6 tries on the sample: images of seed 0 and seed 1 in one folder, the manifest listing those
    of one). Now one claims OUT and the other is refused with the one-line error; same-seed shards both go on."""
    from naturalize.compose.run import _read_state

    rounds = 20
    for r, both in _race(tmp_path / "other", (0, 1), rounds).items():
        said = dict(both)
        winner = [s for s, what in said.items() if what == "claimed"]
        assert len(winner) == 1, (r, said)
        loser = 1 - winner[0]
        assert "holds a compose run of PMY with other settings (seed" in said[loser], said[loser]
        assert _read_state(tmp_path / "other" / str(r), "PMY")["seed"] == winner[0]
    same = _race(tmp_path / "same", (5, 5), rounds)
    assert same == {r: [(5, "claimed"), (5, "claimed")] for r in range(rounds)}
    assert all(_read_state(tmp_path / "same" / str(r), "PMY")["seed"] == 5 for r in range(rounds))


def test_byte_identical_composites_end_the_run_with_one_warning(
    sample_release: Path, sample_boxes: Path, bank: Path, tmp_path: Path
) -> None:
    """60 transplant composites from a tiny bank (2 PMY images: 2 white-cell sprites x 32 looks x a few donors) hold
    byte-identical images, and compose said nothing: a user trained on exact copies. Now the run ends with one
    warning line saying how many and the fix. The matched scene (continuous positions) gives none."""
    images = pick_images(sample_release, sample_boxes, {"PMY": 2, "LY": 2})
    tiny = make_box_bank(sample_release, sample_boxes, images, tmp_path / "tiny")
    for scene, source, out in (("transplant", tiny, tmp_path / "t"), ("matched", bank, tmp_path / "m")):
        r = subprocess.run(
            _compose_pmy(source, 60, "--scene", scene, "--out", str(out), "--workers", "1", "--no-progress"),
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stderr[-2000:]
        same = [k for k in Counter(p.read_bytes() for p in (out / "PMY").iterdir()).values() if k > 1]
        warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
        if scene == "matched":
            assert not same and not warnings, r.stderr
            continue
        assert same, "the tiny bank should repeat images"
        (line,) = warnings
        assert line.startswith(
            f"warning: {sum(same) - len(same)} of the 60 PMY images in {out} are byte-identical copies of another "
            f"({len(same)} group(s), e.g. PMY_syn_0_"
        ), line
        assert "use a bigger bank (more PMY images segmented) or a smaller --n" in line


def test_identical_groups_compare_the_bytes_of_equal_keys(tmp_path: Path) -> None:
    from naturalize.compose.dupes import bytes_key, identical_groups

    datas = {"a": b"x" * 640, "b": b"x" * 640, "c": b"x" * 639 + b"y", "d": b"z" * 640}
    for name, data in datas.items():
        (tmp_path / name).write_bytes(data)
    assert bytes_key(datas["a"]) == bytes_key(datas["c"])  # every 64th byte alike: the same key, other bytes
    entries = [{"file": name, "key": bytes_key(data)} for name, data in datas.items()]
    assert identical_groups(tmp_path, [*entries, {"file": "d"}]) == [["a", "b"]]


def test_shard_ranges_cover_the_run() -> None:
    for n in (1, 7, 100):
        for parts in (1, 2, 3, 8):
            got = [i for k in range(1, parts + 1) for i in shard_range(n, (k, parts))]
            assert got == list(range(n))


def test_the_last_line_says_what_the_shard_covers_and_what_out_holds(bank: Path, tmp_path: Path) -> None:
    """After shard 2/2 of a 1-image run, shard 1/2 has nothing to make: the line said "0 images of this run in OUT"
    while OUT held the run's one image; after 2/2 of 7 it said "4 images of this run" as if that were all."""

    def last_line(out: Path, n: int, *more: str) -> str:
        r = subprocess.run(
            _compose_pmy(bank, n, "--out", str(out), "--workers", "1", *more), capture_output=True, text=True
        )
        assert r.returncode == 0, r.stderr
        return r.stdout.strip().splitlines()[-1]

    one = tmp_path / "one"
    assert f"shard 2/2: its 1 images (indices 0..0) are in {one}; {one} holds 1 of the run's 1 PMY" in last_line(
        one, 1, "--shard", "2/2"
    )
    said = last_line(one, 1, "--shard", "1/2")
    assert said.startswith("shard 1/2: no image to make") and f"{one} holds 1 of the run's 1 PMY images" in said
    seven = tmp_path / "seven"
    said = last_line(seven, 7, "--shard", "2/2")
    assert f"its 4 images (indices 3..6) are in {seven}; {seven} holds 4 of the run's 7 PMY images" in said
    said = last_line(seven, 7)
    assert f"7 PMY images in {seven} (indices 0..6); wrote" in said
    assert f"wrote {seven / 'manifest.jsonl'} and {seven / 'annotations.json'}" in said


def test_bad_input_is_one_clear_error(bank: Path, tmp_path: Path) -> None:
    def err(**kw) -> str:
        args = dict(bank=bank, cls="PMY", n=3, out=tmp_path / "o", workers=1, progress=False) | kw
        with pytest.raises(UserError) as e:
            compose_class(**args)
        return str(e.value)

    assert "unknown class 'XYZ'" in err(cls="XYZ")
    assert "no WBC sprites of class BA" in err(cls="BA")
    assert "at least 1" in err(n=0)
    assert "--shard 3/2" in err(shard=(3, 2))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert "not empty" in err(out=foreign)
    compose_class(bank, "PMY", 3, tmp_path / "run", seed=1, workers=1, progress=False)
    assert "seed" in err(out=tmp_path / "run", seed=2)
    compose_class(bank, "PMY", 3, tmp_path / "run", seed=2, workers=1, progress=False, overwrite=True)
    assert not list((tmp_path / "run" / "PMY").glob("PMY_syn_1_*"))
    old = tmp_path / "oldbank"
    old.mkdir()
    meta = json.loads((bank / "bank.json").read_text())
    (old / "bank.json").write_text(json.dumps(meta | {"format_version": 99}))
    assert "format version 99" in err(bank=old)
    with pytest.raises(UserError, match="--quality 0 is not a JPEG quality"):
        ComposeParams(quality=0)
    # the command line prints it as one line and exits 2
    r = subprocess.run(_compose_pmy(bank, 5, "--shard", "x"), capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "--shard 'x'" in r.stderr


def test_compose_no_progress_prints_no_bar(bank: Path, tmp_path: Path) -> None:
    """--no-progress (as segment and realism have it) leaves the bar out of a log; the images are made."""
    cmd = _compose_pmy(bank, 4, "--out", str(tmp_path / "syn"), "--workers", "1")
    quiet = subprocess.run([*cmd, "--no-progress"], capture_output=True, text=True)
    assert quiet.returncode == 0 and "img/s" not in quiet.stderr, quiet.stderr
    assert len(list((tmp_path / "syn" / "PMY").iterdir())) == 4


def test_preview_shows_real_beside_synthetic(bank: Path, sample_release: Path, tmp_path: Path) -> None:
    compose_class(bank, "PMY", 6, tmp_path / "syn", workers=1, progress=False)
    counts = contact_sheet(tmp_path / "syn", tmp_path / "sheet.png", n=8, real=sample_release / "ig")
    assert counts == {"real": 4, "synthetic": 4, "unreadable": []}
    sheet = cv2.imread(str(tmp_path / "sheet.png"))
    assert sheet.shape[0] >= 128 and sheet.shape[1] > 4 * 128


@pytest.mark.parametrize("scene", ["matched", "paper"])  # drawn bank: no source images for transplant
def test_ctrl_c_stops_quietly_with_130_and_resumes(scene: str, tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) mid-run: one 'interrupted' line, exit code
    130, no traceback from the command or its 2 workers; the same command then finishes the run."""
    import os
    import signal
    import time

    from naturalize.testing import as_from_a_terminal
    from naturalize.testing.drawnbank import make_drawn_bank

    bank = make_drawn_bank(tmp_path / "bank", {"PMY": 3, "LY": 2, "PLT": 1})
    out = tmp_path / "out"
    cmd = _compose_pmy(bank, 3000, "--workers", "2", "--scene", scene, "--out", str(out))
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=as_from_a_terminal,
    )
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None and len(list(out.glob("PMY/*.jpg"))) < 20:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "Aborted" not in err, err[-2000:]
    assert err.strip().splitlines()[-1] == "interrupted; rerun the same command to resume"
    made = len(list(out.glob("PMY/*.jpg")))
    assert 20 <= made < 3000
    rerun = subprocess.run(cmd, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert len(list(out.glob("PMY/*.jpg"))) == 3000


def test_preview_skips_a_truncated_jpeg(tmp_path: Path) -> None:
    """A JPEG cut short decodes in OpenCV as a grey-filled tile, with libjpeg's 'Premature end of JPEG file' on
    stderr; preview skips it with its one warning line instead, as classify and realism refuse it."""
    from naturalize.drawn import write_drawn_release
    from naturalize.testing.cli import run_cli

    root = Path(write_drawn_release(tmp_path / "imgs", {"PMY": 3}, seed=0))
    cut = min(root.rglob("PMY_*.jpg"))
    cut.write_bytes(cut.read_bytes()[:1500])
    r = run_cli("naturalize", "preview", root, "--out", tmp_path / "sheet.png", "--n", "4")
    assert r.returncode == 0, r.stderr
    assert f"warning: skipped 1 unreadable image(s): {cut}" in r.stderr
    assert "Premature end" not in r.stderr and "(2 real, 0 synthetic tiles)" in r.stdout


def test_preview_records_its_tiles_provenance(tmp_path: Path) -> None:
    """The contact sheet names the files its tiles show, by origin, and the seed that chose them (a PNG text chunk
    'provenance', as the demo's sheets carry): it used to record nothing. A skipped, unreadable file is not named."""
    import json

    from PIL import Image

    from naturalize.drawn import write_drawn_release

    root = Path(write_drawn_release(tmp_path / "imgs", {"PMY": 4}, seed=0))
    files = sorted(root.rglob("PMY_*.jpg"))
    syn = files[0].rename(files[0].with_name("PMY_syn_0_0.jpg"))
    files[1].write_bytes(files[1].read_bytes()[:1500])
    counts = contact_sheet(root, tmp_path / "sheet.png", n=8, seed=3)
    with Image.open(tmp_path / "sheet.png") as im:
        prov = json.loads(im.text["provenance"])
    assert prov["made_by"] == "naturalize preview" and prov["seed"] == 3
    rel = lambda f: f.relative_to(root).as_posix()  # noqa: E731
    assert prov["synthetic"] == [rel(syn)] and sorted(prov["real"]) == [rel(f) for f in files[2:]]
    assert counts["unreadable"] == [str(files[1])]


def test_killed_run_resumes_to_the_same_files(bank: Path, tmp_path: Path) -> None:
    import signal
    import time

    cmd = _compose_pmy(bank, 200, "--workers", "1", "--seed", "5")
    killed = tmp_path / "killed"
    proc = subprocess.Popen(cmd + ["--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and len(list((killed / "PMY").glob("*.jpg"))) < 20:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    made = len(list((killed / "PMY").glob("*.jpg")))
    assert 20 <= made < 200, "the run was not interrupted mid-way"
    subprocess.run(cmd + ["--out", str(killed)], check=True, capture_output=True)
    clean = compose_class(bank, "PMY", 200, tmp_path / "clean", seed=5, workers=1, progress=False)
    assert _files(killed) == _files(clean.pop().parents[1])


def test_a_rerun_clears_the_temporary_files_a_killed_run_left(bank: Path, tmp_path: Path) -> None:
    """A run killed while writing an image (its temp file beside it, the image missing) or the manifest and COCO
    file (their temp files in OUT) left those hidden temp files behind for good: the rerun finished the run but
    kept them. Now the rerun removes them and OUT is the files of an uninterrupted run, byte for byte; the temp
    files of a shard still running (other indices, a live writer) stay."""
    import socket

    out, clean = tmp_path / "out", tmp_path / "clean"
    compose_class(bank, "PMY", 12, clean, seed=5, workers=1, progress=False)
    compose_class(bank, "PMY", 12, out, seed=5, shard=(1, 2), workers=1, progress=False)
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()  # its id is that of a process that has ended, as a killed run's
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # a shard still writing
    host = socket.gethostname()
    image = out / "PMY" / "PMY_syn_5_3.jpg"
    killed = {
        image.with_name(f".{image.name}.{ended.pid}.tmp"): image.read_bytes()[:500],
        out / f".manifest.jsonl.{host}.{ended.pid}.tmp": b'{"background"',
        out / f".annotations.json.{host}.{ended.pid}.tmp": b'{"annotations":[',
    }
    running = {  # a shard of indices 6..11 still writing (live writer, or another host's)
        out / "PMY" / f".PMY_syn_5_8.jpg.{ended.pid}.tmp": b"\xff\xd8",
        out / f".manifest.jsonl.{host}.{live.pid}.tmp": b"{",
        out / f".annotations.json.other-host.{ended.pid}.tmp": b"{",
    }
    mine = {  # the user's files, named like temp files but not of the shapes compose writes
        out / "PMY" / f".{image.name}.mine.tmp": b"mine",
        out / ".manifest.jsonl.mine.tmp": b"mine",
        out / "notes.tmp": b"mine",
    }
    image.unlink()
    for path, data in {**killed, **running, **mine}.items():
        path.write_bytes(data)
    try:
        compose_class(bank, "PMY", 12, out, seed=5, shard=(1, 2), workers=1, progress=False)
    finally:
        live.kill()
        live.wait()
    assert not any(p.exists() for p in killed) and all(p.read_bytes() == d for p, d in running.items())
    assert all(p.read_bytes() == d for p, d in mine.items())
    for p in [*running, *mine]:
        p.unlink()
    compose_class(bank, "PMY", 12, out, seed=5, shard=(2, 2), workers=1, progress=False)
    hidden = sorted(p.name for p in out.rglob(".*") if p.is_file() and STATE_DIR not in p.parts)
    assert hidden == [".naturalize-output.json"]
    assert _files(out) == _files(clean)


def test_preview_of_another_tools_images_beside_real_ones(tmp_path: Path) -> None:
    """`preview SYN --real REAL` on synthetic images from another tool (no *_syn_* names): they used to be shown as
    'real' tiles mixed with the --real ones ('12 real, 0 synthetic tiles'); DIR is the synthetic side."""
    import json

    from PIL import Image

    from naturalize.drawn import write_drawn_release

    real = Path(write_drawn_release(tmp_path / "real", {"LY": 3}, seed=0))
    other = Path(write_drawn_release(tmp_path / "other", {"LY": 3}, seed=1))
    counts = contact_sheet(other, tmp_path / "sheet.png", n=6, real=real)
    assert counts == {"real": 3, "synthetic": 3, "unreadable": []}
    with Image.open(tmp_path / "sheet.png") as im:
        prov = json.loads(im.text["provenance"])
    assert sorted(prov["real"]) == [p.relative_to(real).as_posix() for p in sorted(real.rglob("*.jpg"))]
    assert sorted(prov["synthetic"]) == [p.relative_to(other).as_posix() for p in sorted(other.rglob("*.jpg"))]


def test_preview_of_a_bank_shows_its_sprites_by_kind(tmp_path: Path) -> None:
    """`preview BANK`: the tiles used to include the bank's backgrounds and label every red cell and platelet with
    the class of the image it was cut from ('PMY real' under a red cell); now sprites only, spread over RBC, PLT and
    the white cells' classes."""
    import json

    from PIL import Image

    from naturalize.testing.drawnbank import make_drawn_bank

    bank = make_drawn_bank(tmp_path / "bank", {"PMY": 3, "LY": 2})
    counts = contact_sheet(bank, tmp_path / "sheet.png", n=4, seed=0)
    with Image.open(tmp_path / "sheet.png") as im:
        shown = [bank / p for p in json.loads(im.text["provenance"])["real"]]  # named relative to the bank
    assert counts["real"] == 4 and all(p.is_relative_to(bank / "sprites") and p.is_file() for p in shown)
    kinds = sorted(p.parent.name for p in shown)
    assert kinds == ["LY", "PLT", "PMY", "RBC"], shown


def test_preview_of_a_bank_draws_its_sprites_at_one_scale(tmp_path: Path) -> None:
    """Each sprite was fitted to its tile alone: a 12 px platelet filled it as a 157 px white cell did, and was
    labelled 'PLT real'. Now one scale for all (the largest fills a tile), labelled as sprites."""
    import json

    from PIL import Image

    from naturalize.compose.preview import TILE
    from naturalize.testing.drawnbank import make_drawn_bank

    bank = make_drawn_bank(tmp_path / "bank", {"PMY": 3})
    contact_sheet(bank, tmp_path / "sheet.png", n=6, seed=0)
    with Image.open(tmp_path / "sheet.png") as im:
        shown = [bank / p for p in json.loads(im.text["provenance"])["real"]]  # named relative to the bank
        sheet = np.asarray(im.convert("RGB"))
    cols = sheet.shape[1] // (TILE + 2)
    ratios = {}
    for i, p in enumerate(shown):
        r, c = divmod(i, cols)
        tile = sheet[r * (TILE + 2) : r * (TILE + 2) + TILE - 16, c * (TILE + 2) : c * (TILE + 2) + TILE]
        xs = np.nonzero((tile < 245).any(axis=(0, 2)))[0]  # columns holding the sprite (above the label strip)
        with Image.open(p) as sprite:
            ratios[p.parent.name] = (xs.max() - xs.min() + 1) / sprite.width
    assert {"RBC", "PLT", "PMY"} <= set(ratios)
    assert max(ratios.values()) / min(ratios.values()) < 1.2, ratios


def test_preview_keeps_an_images_shape(tmp_path: Path) -> None:
    """A 2:1 image (another tool's 512x256 output) was squashed into the square tile; it is fitted whole, its shape
    kept, on white."""
    from naturalize.compose.preview import _tile

    cv2.imwrite(str(tmp_path / "PMY_wide.png"), np.full((100, 200, 3), (0, 0, 255), np.uint8))
    tile = _tile(tmp_path / "PMY_wide.png", "syn")
    assert tile is not None and tile.shape == (128, 128, 3)
    assert (tile[:30] == 255).all() and (tile[40:80, :, 2] == 255).all() and (tile[40:80, :, 0] == 0).all()


@pytest.mark.parametrize("scene", ["transplant", "matched", "paper"])
def test_the_state_names_the_model_that_cut_the_sprites(tmp_path: Path, scene: str) -> None:
    """A bank made by SAM composes in every scene, and the run's state file names the backend, the model type and
    the checkpoint (file name and MD5) from the bank's bank.json: a composed image is traced to the weights."""
    from naturalize.bank import BankWriter
    from naturalize.compose.params import ComposeParams
    from naturalize.compose.run import compose_class
    from naturalize.testing.drawnbank import drawn_entry, drawn_scene

    model = {"model_type": "vit_b", "checkpoint": "sam_vit_b_01ec64.pth", "checkpoint_md5": "01ec64d2" + "0" * 24}
    root = tmp_path / "pbc"  # the source images (the transplant scene reads its donors there)
    identity = {"backend": "sam", "parameters": {**model, "points_per_side": 16}, "root": str(root)}
    writer = BankWriter.open(tmp_path / "bank", identity)
    for cls, i in (("PMY", 0), ("PMY", 1), ("LY", 0)):
        entry = writer.add(drawn_entry(cls, i, 0))[0]
        (root / cls).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / entry.source), drawn_scene(cls, i, 0)[1][:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 100])
    paths = compose_class(tmp_path / "bank", "PMY", 2, tmp_path / "out", params=ComposeParams(scene=scene), workers=1)
    assert len(paths) == 2
    state = json.loads((tmp_path / "out" / ".naturalize-compose" / "PMY.json").read_text())
    assert state["segmentation"] == {"backend": "sam", **model}


def test_a_class_whose_white_cells_the_gate_refused_points_at_the_qc_page(tmp_path: Path) -> None:
    """A bank holding EO images but no kept EO white cell (what a SAM checkpoint of random weights gives) is not
    told to segment EO images into it (it has them): the error line names the gate and the QC page."""
    from naturalize.compose.run import compose_class
    from naturalize.fsio import UserError
    from naturalize.testing.drawnbank import make_drawn_bank

    bank = make_drawn_bank(tmp_path / "bank", {"LY": 1})
    with pytest.raises(UserError, match="segment images of class EO into it"):
        compose_class(bank, "EO", 1, tmp_path / "out")
    from dataclasses import replace

    from naturalize.bank import BankWriter
    from naturalize.testing.drawnbank import drawn_entry

    writer = BankWriter.open(tmp_path / "bank2", {"backend": "sam"})
    writer.add(drawn_entry("LY", 0, 0))
    eo = drawn_entry("EO", 0, 0)  # its white cell refused by the gate (a mask only, no PNG)
    refused = [replace(sp, png=b"", reason="shape", mask="x") if sp.kind == "WBC" else sp for sp in eo.sprites]
    writer.add(replace(eo, sprites=tuple(refused)))
    with pytest.raises(UserError, match=r"none of its 1 EO images gave one the quality gate kept: look at .*qc"):
        compose_class(tmp_path / "bank2", "EO", 1, tmp_path / "out")


def test_a_run_recorded_before_its_segmentation_was_resumes(tmp_path: Path) -> None:
    """A state file written before `segmentation` was recorded (same bank) is resumed, not refused."""
    from naturalize.compose.run import compose_class
    from naturalize.testing.drawnbank import make_drawn_bank

    bank = make_drawn_bank(tmp_path / "bank", {"PMY": 2})
    args = dict(params=ComposeParams(scene="paper"), workers=1, progress=False)
    compose_class(bank, "PMY", 1, tmp_path / "out", **args)
    state_file = tmp_path / "out" / ".naturalize-compose" / "PMY.json"
    state = json.loads(state_file.read_text())
    assert state.pop("segmentation") == {"backend": "drawn"}
    state_file.write_text(json.dumps(state))
    assert len(compose_class(bank, "PMY", 1, tmp_path / "out", **args)) == 1  # resumed (else: other settings)


def test_a_state_file_of_an_older_version_is_refused_and_overwrite_makes_it_again(tmp_path: Path) -> None:
    """A state file as an older version wrote it (no `code`, no `segmentation`, no wbc_warp / wbc_focus parameters),
    written by hand beside a run's images, was resumed when its settings were the same: images of two versions of
    the compose code then shared one class. It is now refused with one line naming `code` (with other settings too,
    among them), nothing touched; --overwrite makes the images again, and the state records this code."""
    from naturalize.codeversion import code_digest
    from naturalize.compose.library import bank_fingerprint
    from naturalize.compose.run import COMPOSE_CODE, STATE_VERSION, compose_class
    from naturalize.testing.drawnbank import make_drawn_bank

    bank = make_drawn_bank(tmp_path / "bank", {"PMY": 2})
    out, paper = tmp_path / "out", ComposeParams(scene="paper")
    args = dict(workers=1, progress=False)
    first = compose_class(bank, "PMY", 2, out, params=paper, **args)
    made = {p: p.read_bytes() for p in first}
    params = {k: v for k, v in paper.as_dict().items() if k not in ("wbc_warp", "wbc_focus")}
    older = {"version": STATE_VERSION, "class": "PMY", "seed": 0, "n": 2, "params": params}
    state_file = out / STATE_DIR / "PMY.json"
    state_file.write_text(json.dumps({**older, "bank": bank_fingerprint(Bank.open(bank))}))
    stamps = [p.stat().st_mtime_ns for p in first]
    with pytest.raises(UserError, match=r"made by another version of naturalize's compose code .*--overwrite"):
        compose_class(bank, "PMY", 2, out, params=paper, **args)
    with pytest.raises(UserError, match=r"other settings \(code, params, params\.wbc_warp\)"):
        compose_class(bank, "PMY", 2, out, params=ComposeParams(scene="paper", wbc_warp=True), **args)
    assert [p.stat().st_mtime_ns for p in first] == stamps  # refused: nothing touched
    assert compose_class(bank, "PMY", 2, out, params=paper, overwrite=True, **args) == first
    assert {p: p.read_bytes() for p in first} == made
    assert json.loads(state_file.read_text())["code"] == code_digest(*COMPOSE_CODE)


def test_a_claim_begun_is_not_a_users_folder(tmp_path: Path) -> None:
    """OUT holding only a state folder (and the marker's temporary file): a run killed while it claimed OUT, or one
    claiming it at this instant; compose goes on there. One more file of anyone's and OUT is refused, untouched."""
    from naturalize.compose.run import compose_class
    from naturalize.outputs import MARKER
    from naturalize.testing.drawnbank import make_drawn_bank

    bank = make_drawn_bank(tmp_path / "bank", {"PMY": 2})
    args = dict(params=ComposeParams(scene="paper"), workers=1, progress=False)
    begun = tmp_path / "begun"
    (begun / STATE_DIR).mkdir(parents=True)
    (begun / f".{MARKER}.abcd_123.tmp").write_text("{")
    assert len(compose_class(bank, "PMY", 1, begun, **args)) == 1
    user = tmp_path / "user"
    (user / STATE_DIR).mkdir(parents=True)
    (user / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="is not empty and was not written by naturalize"):
        compose_class(bank, "PMY", 1, user, **args)
    assert sorted(p.name for p in user.rglob("*")) == [STATE_DIR, "notes.txt"]


@pytest.mark.parametrize("damaged", ["[1]", '{"seed": 0}', '{"seed": 0, "n": 2, "params": [1]}'])
def test_a_damaged_state_file_is_refused_and_overwrite_remakes_the_class(tmp_path: Path, damaged: str) -> None:
    """A state file that is not a compose run's settings (edited by hand: not an object, no n, params not an object)
    gave a traceback; now one error line names it, nothing is touched, and --overwrite makes the class again: the
    files of a fresh run."""
    from naturalize.compose.run import compose_class
    from naturalize.testing.drawnbank import make_drawn_bank

    bank = make_drawn_bank(tmp_path / "bank", {"PMY": 2})
    args = dict(params=ComposeParams(scene="paper"), workers=1, progress=False)
    compose_class(bank, "PMY", 2, tmp_path / "fresh", **args)
    out = tmp_path / "out"
    compose_class(bank, "PMY", 2, out, seed=1, **args)
    (out / STATE_DIR / "PMY.json").write_text(damaged)
    before = _files(out)
    with pytest.raises(UserError, match=r"PMY\.json is damaged .*--overwrite"):
        compose_class(bank, "PMY", 2, out, **args)
    assert _files(out) == before
    compose_class(bank, "PMY", 2, out, overwrite=True, **args)
    assert _files(out) == _files(tmp_path / "fresh")


def test_overwrite_leaves_files_in_the_journal_folder_that_compose_did_not_write(tmp_path: Path) -> None:
    """--overwrite removed every PMY.*.jsonl in the run's journal folder: a user's PMY.notes.jsonl (no process id
    in its name) was lost, and any such file was read as a journal. Now only <cls>.<host>.<pid>.jsonl are compose's:
    the user's files stay byte-identical, and the run files equal a fresh run's."""
    from naturalize.compose.run import compose_class
    from naturalize.testing.drawnbank import make_drawn_bank

    bank = make_drawn_bank(tmp_path / "bank", {"PMY": 2})
    args = dict(params=ComposeParams(scene="paper"), workers=1, progress=False)
    compose_class(bank, "PMY", 2, tmp_path / "fresh", **args)
    out = tmp_path / "out"
    compose_class(bank, "PMY", 2, out, seed=1, **args)
    journal = out / STATE_DIR / "journal"
    mine = {journal / "PMY.notes.jsonl": b'{"note": "mine"}\n', journal / "PMY.host.1.jsonl.bak": b"kept\n"}
    for path, data in mine.items():
        path.write_bytes(data)
    compose_class(bank, "PMY", 2, out, overwrite=True, **args)
    assert {p: p.read_bytes() for p in mine} == mine
    assert _files(out) == _files(tmp_path / "fresh")
