"""`compose --scene transplant`: a real image keeps its own red cells and platelets, only its white cell is
replaced; provenance of every kept cell; donors inpainted once per bank; determinism; bad input.

A small sprite bank is cut from real sample images with their OI-PBC boxes (naturalize.testing.boxbank)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from naturalize.bank import Bank
from naturalize.compose.library import load_library
from naturalize.compose.params import ComposeParams
from naturalize.compose.run import STATE_DIR, compose_class, render
from naturalize.compose.scenes import (
    CACHE_DIR,
    HOLE_MARGIN,
    _eligible,
    compose_transplant,
    transplant_library,
)
from naturalize.fsio import UserError
from naturalize.testing.boxbank import make_box_bank, pick_images
from naturalize.testing.cli import run_cli

TRANSPLANT = ComposeParams(scene="transplant")


@pytest.fixture(scope="module")
def bank(sample_release: Path, sample_boxes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bank of 5 PMY, 3 LY and 3 SNE images of the sample."""
    images = pick_images(sample_release, sample_boxes, {"PMY": 5, "LY": 3, "SNE": 3})
    return make_box_bank(sample_release, sample_boxes, images, tmp_path_factory.mktemp("bank"))


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and STATE_DIR not in p.parts and not p.name.startswith(".")
    }


def _placed_mask(cell, width: int, height: int) -> np.ndarray:
    """A placed cell's whole mask in image coordinates."""
    full = np.zeros((height + 400, width + 400), bool)
    h, w = cell.mask.shape
    full[200 + cell.y : 200 + cell.y + h, 200 + cell.x : 200 + cell.x + w] = cell.mask > 0
    return full[200 : 200 + height, 200 : 200 + width]


def test_donor_keeps_its_own_cells_and_only_its_white_cell_changes(bank: Path) -> None:
    b = Bank.open(bank)
    lib = transplant_library(b, "PMY", 0, TRANSPLANT)
    root = Path(b.meta["root"])
    seen = set()
    for i in range(12):
        comp = compose_transplant(lib, np.random.default_rng([0, 9, i]), TRANSPLANT)
        donor = lib.plate_rows[comp.plate]
        seen.add(donor.source)
        new = comp.cells[-1]
        assert new.role == "centre" and lib.centre.rows[new.index].source != donor.source  # another image's cell
        assert lib.centre.rows[new.index].label == "PMY"
        real = cv2.imread(str(root / donor.source))
        removed = next(r for r in b.sprites if r.sprite_id == lib.scene.removed[comp.plate])
        # far from the removed cell's box and the new cell, every pixel is the real image's own
        far = np.ones(real.shape[:2], bool)
        g = HOLE_MARGIN + 8
        far[max(0, removed.y0 - g) : removed.y1 + g, max(0, removed.x0 - g) : removed.x1 + g] = False
        h, w = new.mask.shape
        far[max(0, new.y) : new.y + h, max(0, new.x) : new.x + w] = False
        assert np.array_equal(comp.image[far], real[far])
        # the kept cells are the donor's red cells and platelets in the bank, with their own source, but for
        # those the inpainted hole took: every kept cell still has pixels in the donor's label map
        kept = [lib.scene.kept.rows[c.index] for c in comp.cells[:-1]]
        want = {r.sprite_id for r in b.sprites if r.source == donor.source and r.kind != "WBC"}
        assert {r.sprite_id for r in kept} <= want and len(kept) >= len(want) - 3
        assert all(r.source == donor.source for r in kept)
        assert set(np.unique(lib.scene.labels[comp.plate])) == set(range(len(kept) + 1))
        # every pixel of the new cell carries its label (no kept cell shows through it), and only those
        assert np.array_equal(comp.labels == len(comp.cells), _placed_mask(new, *real.shape[1::-1]))
    assert len(seen) >= 3  # scene donors of several images (and classes)


def test_each_kept_cells_box_is_where_its_pixels_are(bank: Path) -> None:
    lib = transplant_library(Bank.open(bank), "PMY", 0, TRANSPLANT)
    for labels, boxes in zip(lib.scene.labels, lib.scene.boxes):
        assert labels.shape == TRANSPLANT.canvas[::-1] and len(boxes) == int(labels.max())
        for j, (x, y, w, h, area) in enumerate(boxes, start=1):
            ys, xs = np.nonzero(labels == j)
            assert (x, y, w, h, area) == (xs.min(), ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1, len(xs))


def test_a_kept_cells_recorded_place_is_its_sprites_box_and_pasting_it_there_gives_the_pixels(
    bank: Path, tmp_path: Path
) -> None:
    """A consumer pastes a kept cell's sprite (identity transform) at its manifest x, y: its w x h is the sprite's
    size and, inside the COCO mask, the composite's pixels are the sprite's (away from the inpainted hole and the new
    cell, whose soft edges blend a few pixels around them), also for a cell another cell or the hole partly covers
    (its visible box is then smaller than the sprite's; x, y, w, h once were that visible box)."""
    out = tmp_path / "run"
    compose_class(bank, "PMY", 12, out, params=replace(TRANSPLANT, fmt="png"), workers=1, progress=False)
    b = Bank.open(bank)
    rows = {r.sprite_id: r for r in b.sprites}
    coco = COCO(str(out / "annotations.json"))
    partly_covered = compared = 0
    for image_id, line in enumerate((out / "manifest.jsonl").read_text().splitlines(), start=1):
        m = json.loads(line)
        image = cv2.imread(str(out / m["file"]))[:, :, ::-1]
        far = np.ones(image.shape[:2], bool)  # away from the removed cell's box and the new cell (as above)
        removed, g = rows[m["background"]["removed"]], HOLE_MARGIN + 8
        far[max(0, removed.y0 - g) : removed.y1 + g, max(0, removed.x0 - g) : removed.x1 + g] = False
        new = next(c for c in m["cells"] if c["centre"])
        far[max(0, new["y"] - 2) : new["y"] + new["h"] + 2, max(0, new["x"] - 2) : new["x"] + new["w"] + 2] = False
        anns = iter(coco.loadAnns(coco.getAnnIds(imgIds=[image_id])))
        for c in m["cells"]:
            ann = next(anns) if "area" in c else None
            if c["centre"]:
                continue
            r = rows[c["sprite_id"]]
            x, y, w, h = c["x"], c["y"], c["w"], c["h"]
            assert (x, y, w, h) == (r.x0, r.y0, r.x1 - r.x0, r.y1 - r.y0)
            if ann is None:
                continue
            partly_covered += (c["bbox"][2], c["bbox"][3]) != (w, h)
            visible = coco.annToMask(ann)[y : y + h, x : x + w] > 0
            assert visible.sum() == c["area"]  # every visible pixel lies inside the sprite's box
            visible &= far[y : y + h, x : x + w]
            compared += int(visible.sum())
            assert np.array_equal(image[y : y + h, x : x + w][visible], b.load_sprite(r)[visible, :3])
    assert partly_covered > 0 and compared > 10_000


@pytest.mark.parametrize("scene", ["transplant", "matched", "paper"])
def test_another_size_scales_the_whole_composite(bank: Path, tmp_path: Path, scene: str) -> None:
    """--size resizes the finished composite: every cell keeps its size relative to the image (the white cell was
    once pasted at full scale onto a shrunken plate), and the records are those of the written image."""
    full, small = ComposeParams(scene=scene, fmt="png"), ComposeParams(scene=scene, fmt="png", size=(180, 150))
    out = {p.size: tmp_path / f"{p.size[0]}" for p in (full, small)}
    for p in (full, small):
        compose_class(bank, "PMY", 3, out[p.size], params=p, workers=1, progress=False)
    for i in range(3):
        big = cv2.imread(str(out[full.size] / "PMY" / f"PMY_syn_0_{i}.png"))
        little = cv2.imread(str(out[small.size] / "PMY" / f"PMY_syn_0_{i}.png"))
        assert little.shape == (150, 180, 3)
        assert np.array_equal(little, cv2.resize(big, (180, 150), interpolation=cv2.INTER_AREA))
    lines = {k: [json.loads(x) for x in (o / "manifest.jsonl").read_text().splitlines()] for k, o in out.items()}
    for a, b in zip(lines[full.size], lines[small.size]):
        assert (b["width"], b["height"]) == (180, 150) and len(a["cells"]) == len(b["cells"])
        for ca, cb in zip(a["cells"], b["cells"]):
            assert ca["sprite_id"] == cb["sprite_id"] and abs(cb["w"] - ca["w"] / 2) <= 1
            if "bbox" in cb:  # the visible part lies inside the image and inside the cell's placed box
                x, y, w, h = cb["bbox"]
                assert 0 <= x and 0 <= y and x + w <= 180 and y + h <= 150
                assert cb["x"] - 1 <= x and x + w <= cb["x"] + cb["w"] + 1


def test_an_image_whose_white_cell_the_gate_refused_lends_no_scene_and_no_plate(bank: Path) -> None:
    b = Bank.open(bank)
    donors = _eligible(b)
    refused = sorted(donors)[0]  # its white cell's mask bitten: inpainting it would leave part of the cell
    b.sprites = [replace(r, reason="shape") if r.source == refused and r.kind == "WBC" else r for r in b.sprites]
    assert set(_eligible(b)) == set(donors) - {refused}
    for scene in ("paper", "matched"):  # nor a plate: part of the cell would stay on it
        sources = {r.source for r in load_library(b, "PMY", 0, ComposeParams(scene=scene)).plate_rows}
        assert refused not in sources and sources == {r.source for r in b.backgrounds} - {refused}


def test_manifest_and_coco_record_the_donor_and_every_kept_cell(bank: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    compose_class(bank, "PMY", 6, out, params=TRANSPLANT, workers=1, progress=False)
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    b = Bank.open(bank)
    coco = COCO(str(out / "annotations.json"))
    for image_id, m in enumerate(lines, start=1):
        donor = m["background"]["source"]
        assert m["scene"] == "transplant" and m["background"]["removed"].startswith(Path(donor).stem)
        kept = [c for c in m["cells"] if not c["centre"]]
        want = {r.sprite_id for r in b.sprites if r.source == donor and r.kind != "WBC"}
        # every cell of the donor's scene but those the inpainted hole took (never a cell listed that is gone)
        assert {c["sprite_id"] for c in kept} <= want and len(kept) >= len(want) - 3
        assert all(c["source"] == donor for c in kept)
        centre = [c for c in m["cells"] if c["centre"]]
        assert len(centre) == 1 and centre[0]["category"] == "PMY" and centre[0]["source"] != donor
        cx, cy, cw, ch = (centre[0][k] for k in ("x", "y", "w", "h"))
        for c in kept:  # a kept cell without visible pixels can only be one the new white cell covers
            if "area" not in c:
                assert c["x"] < cx + cw and cx < c["x"] + c["w"] and c["y"] < cy + ch and cy < c["y"] + c["h"]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
        assert len(anns) == sum("rle" in c or "area" in c for c in m["cells"])
        assert sorted(a["area"] for a in anns) == sorted(c["area"] for c in m["cells"] if "area" in c)


def test_donors_inpainted_once_per_bank_and_same_seed_same_bytes(bank: Path, tmp_path: Path) -> None:
    b = Bank.open(bank)
    transplant_library(b, "PMY", 0, TRANSPLANT)
    cache = sorted((bank / CACHE_DIR).glob("*"))
    assert cache and len([p for p in cache if p.suffix == ".json"]) >= 3
    stamps = {p: p.stat().st_mtime_ns for p in cache}
    one = compose_class(bank, "PMY", 40, tmp_path / "one", params=TRANSPLANT, workers=1, progress=False)
    two = compose_class(bank, "PMY", 40, tmp_path / "two", params=TRANSPLANT, workers=2, progress=False)
    assert {p: p.stat().st_mtime_ns for p in cache} == stamps  # read from the cache, not made again
    assert _files(one[0].parents[1]) == _files(two[0].parents[1])
    # without the cache (a fresh copy of the bank) the same images come out
    cached, _ = render(transplant_library(b, "PMY", 0, TRANSPLANT), TRANSPLANT, 0, 3)
    shutil.rmtree(bank / CACHE_DIR)
    fresh, _ = render(transplant_library(Bank.open(bank), "PMY", 0, TRANSPLANT), TRANSPLANT, 0, 3)
    assert np.array_equal(cached, fresh)


def test_a_damaged_or_old_donor_cache_file_is_made_again(bank: Path) -> None:
    b = Bank.open(bank)
    before, _ = render(transplant_library(b, "PMY", 0, TRANSPLANT), TRANSPLANT, 0, 3)
    data = sorted((bank / CACHE_DIR).glob("*.npy"))
    assert data and len(data) == len(list((bank / CACHE_DIR).glob("*.json")))
    data[0].write_bytes(data[0].read_bytes()[:100])  # cut short, as by a full disk
    old = data[1].with_suffix(".png"), data[1].with_suffix(".labels.png")
    for p in old:  # a cache of the previous format beside a current one: removed when that donor is remade
        p.write_bytes(b"old")
    data[1].unlink()
    records = sorted((bank / CACHE_DIR).glob("*.json"))
    records[-1].write_text('{"rows": "ab')  # a record cut short (before: a JSONDecodeError traceback)
    records[-2].write_text("[1]")  # JSON but no object (before: an AttributeError)
    (bank / CACHE_DIR / "notes.txt").write_text("mine\n")  # not the cache's: stays
    after, _ = render(transplant_library(Bank.open(bank), "PMY", 0, TRANSPLANT), TRANSPLANT, 0, 3)
    assert np.array_equal(before, after)
    assert np.load(data[0]).shape[2] == 4 and data[1].is_file()
    assert not any(p.exists() for p in old) and (bank / CACHE_DIR / "notes.txt").read_text() == "mine\n"
    assert all(json.loads(p.read_text())["rows"] for p in records[-2:])  # made again
    (bank / CACHE_DIR / "notes.txt").unlink()


def test_bank_without_source_images_is_one_clear_error(bank: Path, tmp_path: Path) -> None:
    moved = tmp_path / "bank"
    shutil.copytree(bank, moved, ignore=shutil.ignore_patterns("scenes"))
    meta = json.loads((moved / "bank.json").read_text())
    meta["root"] = str(tmp_path / "gone")
    (moved / "bank.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="source images"):
        transplant_library(Bank.open(moved), "PMY", 0, TRANSPLANT)
    r = run_cli(
        "naturalize",
        "compose",
        "--class",
        "PMY",
        "--n",
        2,
        "--bank",
        bank,
        "--out",
        tmp_path / "x",
        "--scene",
        "collage",
    )
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: --scene 'collage'")
    assert "Traceback" not in r.stderr


MATCHED = ComposeParams(scene="matched")


def test_coherent_pools_take_own_image_then_closest_stain() -> None:
    from naturalize.compose.scenes import MATCHED_SOURCES, coherent_pools

    sources = ["a", "b", "c", "d"]
    plasma = np.array([[200, 210, 240], [120, 150, 200], [198, 211, 239], [60, 90, 100]], float)
    rbc = ["a"] * 3 + ["b"] * 20 + ["c"] * 2 + ["d"] * 4
    pools = coherent_pools(sources, plasma, rbc)
    assert [rbc[i] for i in pools[0]] == ["a"] * 3 + ["c"] * 2 + ["b"] * 20  # own, closest, next (up to 8 cells)
    assert {rbc[i] for i in pools[1]} == {"b"}  # 20 of its own: enough
    assert all(len({rbc[i] for i in p}) <= MATCHED_SOURCES for p in pools)


def test_matched_scene_follows_the_class_statistics(bank: Path, tmp_path: Path) -> None:
    from naturalize.compose.scene_stats import scene_stats
    from naturalize.compose.scenes import MATCHED_SOURCES

    b = Bank.open(bank)
    stats = scene_stats(b, "PMY")
    assert len(stats.sources) >= 3 and (bank / "scenes" / "matched" / "PMY.json").is_file()
    want = {int(n) for n in stats.n_rbc}
    out = tmp_path / "m"
    compose_class(bank, "PMY", 30, out, params=MATCHED, workers=1, progress=False)
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    counts, cut = [], 0
    for m in lines:
        assert m["scene"] == "matched" and "removed" not in m["background"]
        rbc = [c for c in m["cells"] if c["kind"] == "RBC"]
        counts.append(len(rbc))
        assert len({c["source"] for c in rbc}) <= MATCHED_SOURCES
        cut += sum(
            c["x"] < 0 or c["y"] < 0 or c["x"] + c["w"] > m["width"] or c["y"] + c["h"] > m["height"] for c in rbc
        )
    assert max(counts) > 8 and np.median(counts) >= 0.8 * np.median(sorted(want))  # crowded as the real images
    assert cut >= 10  # red cells cut by the border, as in real crops


def _fresh_copy(bank: Path, tmp_path: Path) -> Path:
    """The bank without any matched source cache."""
    from naturalize.compose.source_cache import CACHE_DIR as SOURCES

    out = tmp_path / "bank"
    shutil.copytree(bank, out)
    shutil.rmtree(out / SOURCES, ignore_errors=True)
    return out


def test_matched_source_cache_made_once_per_bank_owned_and_atomic(bank: Path, tmp_path: Path) -> None:
    from naturalize.bank import DERIVED_DIRS
    from naturalize.compose.scenes import matched_library
    from naturalize.compose.source_cache import CACHE_DIR as SOURCES

    copy = _fresh_copy(bank, tmp_path)
    made = matched_library(Bank.open(copy), "PMY", 0, MATCHED)
    d = copy / SOURCES
    index = sorted(d.glob("*.json"))
    assert [p.stem for p in index] == sorted(r.background_id for r in made.plate_rows)
    data = sorted(d.glob("*.npy"))
    assert len(data) == len(index) and not [p for p in d.iterdir() if p.name.startswith(".")]  # no temp left
    assert Path(SOURCES).parts[0] in DERIVED_DIRS  # the bank's own folder: segment --overwrite clears it
    stamps = {p: p.stat().st_mtime_ns for p in index + data}
    read = matched_library(Bank.open(copy), "PMY", 0, MATCHED)
    assert {p: p.stat().st_mtime_ns for p in index + data} == stamps  # read, not made again
    assert not read.rbc.variant(0, 0).bgri.flags.writeable  # memory-mapped from the cache
    for i in range(4):  # made or read: the same images and records
        a, ra = render(made, MATCHED, 0, i)
        b, rb = render(read, MATCHED, 0, i)
        assert np.array_equal(a, b) and ra == rb


def test_matched_stale_or_damaged_cache_entry_is_made_again(bank: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    from naturalize.compose.scenes import matched_library
    from naturalize.compose.source_cache import CACHE_DIR as SOURCES

    copy = _fresh_copy(bank, tmp_path)
    first = matched_library(Bank.open(copy), "PMY", 0, MATCHED)
    image, _ = render(first, MATCHED, 0, 1)
    d = copy / SOURCES
    json_path = sorted(d.glob("*.json"))[0]
    npy_path = next(d.glob(f"{json_path.stem}.*.npy"))
    first_stamp, size = json.loads(json_path.read_text())["stamp"], npy_path.stat().st_size
    npy_path.write_bytes(npy_path.read_bytes()[:1000])  # cut short (e.g. a full disk)
    other = sorted(d.glob("*.json"))[1]
    stamp = json.loads(other.read_text())["stamp"]
    other.write_text(other.read_text().replace(stamp, "0" * 64))  # made by other code or from other rows
    again = matched_library(Bank.open(copy), "PMY", 0, MATCHED)
    assert npy_path.stat().st_size == size and json.loads(other.read_text())["stamp"] == stamp  # both remade
    assert np.array_equal(render(again, MATCHED, 0, 1)[0], image)
    # other pixels asked for (softer edges): a new stamp, its own data file, the old one removed
    user = [d / f"{json_path.stem}.mine.npy", d / f"{json_path.stem}.0123.npy", d / "notes.txt"]
    for f in user:  # files a user put beside the cache: not the tool's, never removed
        f.write_bytes(b"user data")
    soft = replace(MATCHED, feather=1.5)
    matched_library(Bank.open(copy), "PMY", 0, soft)
    assert json.loads(json_path.read_text())["stamp"] != first_stamp
    assert not npy_path.exists() and all(f.read_bytes() == b"user data" for f in user)
    assert [p.name for p in d.glob(f"{json_path.stem}.*.npy") if p not in user] != [npy_path.name]


def test_matched_looks_do_not_depend_on_the_seed_and_runs_are_deterministic(bank: Path, tmp_path: Path) -> None:
    from naturalize.compose.scenes import matched_library
    from naturalize.compose.source_cache import sprite_transforms

    a = sprite_transforms("RBC_1", MATCHED, 3)
    assert a == sprite_transforms("RBC_1", MATCHED, 3) != sprite_transforms("RBC_2", MATCHED, 2)
    b = Bank.open(bank)
    one, two = (matched_library(b, "PMY", seed, MATCHED) for seed in (0, 1))
    shared = set(r.sprite_id for r in one.rbc.rows) & set(r.sprite_id for r in two.rbc.rows)
    assert shared
    for sid in shared:
        i = [r.sprite_id for r in one.rbc.rows].index(sid)
        j = [r.sprite_id for r in two.rbc.rows].index(sid)
        assert one.rbc.transforms[i] == two.rbc.transforms[j] == sprite_transforms(sid, MATCHED, MATCHED.variants)
    kw = dict(params=MATCHED, seed=3, progress=False)
    whole = compose_class(bank, "PMY", 40, tmp_path / "whole", workers=2, **kw)
    compose_class(bank, "PMY", 40, tmp_path / "again", workers=1, **kw)
    assert _files(tmp_path / "whole") == _files(tmp_path / "again")
    before = _files(tmp_path / "whole")
    for q in whole[3:9]:  # an interrupted run: some images and all records gone
        q.unlink()
    shutil.rmtree(tmp_path / "whole" / STATE_DIR / "journal")
    compose_class(bank, "PMY", 40, tmp_path / "whole", workers=1, **kw)
    assert _files(tmp_path / "whole") == before


def test_matched_sampler_centres_no_cell_on_another_and_repeats_itself(bank: Path) -> None:
    """The matched sampler (every small cell's draws made once per image, centres refused on cells already
    placed): the same generator state gives the same composite, and no red cell or platelet has its centre
    pixel on a small cell placed before it."""
    from naturalize.compose.scenes import compose_matched, matched_library

    lib = matched_library(Bank.open(bank), "PMY", 0, MATCHED)
    assert lib.scene.batch_draws and lib.scene.free_centres
    for i in range(12):
        a, b = (compose_matched(lib, np.random.default_rng([0, 9, i]), MATCHED) for _ in range(2))
        assert np.array_equal(a.image, b.image) and [(c.index, c.x, c.y, c.transform) for c in a.cells] == [
            (c.index, c.x, c.y, c.transform) for c in b.cells
        ]
        H, W = a.image.shape[:2]
        small = np.zeros((H, W), bool)
        for c in (c for c in a.cells if c.role in ("RBC", "PLT")):  # in placing order
            h, w = c.mask.shape
            cx, cy = c.x + w // 2, c.y + h // 2
            if 0 <= cx < W and 0 <= cy < H and c.mask[h // 2, w // 2]:
                assert not small[cy, cx]
            small |= _placed_mask(c, W, H)
