"""Records without real data: the class tables, the stratified seeded splitter, duplicates, records.csv, and
reading one file (hash, decode, the reason a file is skipped)."""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from naturalize.classes import CLASSES, WBC_CLASSES, class_of_prefix, normalize_class, parse_classes
from naturalize.fsio import UserError
from naturalize.prepare import count_records, split_records, stratified_split, subsample
from naturalize.records import (
    RECORD_COLUMNS,
    Record,
    detect_layout,
    drop_duplicates,
    load_sources,
    read_image_info,
    read_records,
    write_records,
)


def records(counts: dict[str, int], split: str = "") -> list[Record]:
    """counts[c] records of class c with distinct paths and hashes."""
    return [
        Record(f"{c.lower()}/{c}_{i:03d}.jpg", c, c.lower(), f"{c}-{i}", 360, 363, "RGB", split)
        for c, n in counts.items()
        for i in range(n)
    ]


# ---------------------------------------------------------------- classes


@pytest.mark.parametrize(
    "name, cls",
    [
        ("BNE_123.jpg", "BNE"),
        ("PLATELET_9.jpg", "PLT"),
        ("pmy_1.jpg", "PMY"),
        ("IG_5.jpg", None),
        ("NEUTROPHIL_1.jpg", None),
        ("XYZ_1.jpg", None),
    ],
)
def test_class_of_prefix(name: str, cls: str | None) -> None:
    assert class_of_prefix(name) == cls


def test_parse_classes_normalises_dedups_and_names_the_valid_codes() -> None:
    assert parse_classes(" bne, PMY,,bne , platelet") == ("BNE", "PMY", "PLT")
    assert parse_classes(None) == () and parse_classes("") == ()
    with pytest.raises(ValueError, match="unknown class 'NEU'.*BA, BNE"):
        parse_classes("NEU")
    assert [normalize_class(t) for t in (" pmy ", "Platelet", "PLT", "neu")] == ["PMY", "PLT", "PLT", "NEU"]
    assert len(CLASSES) == 11 and "PLT" not in WBC_CLASSES and len(WBC_CLASSES) == 10


# ---------------------------------------------------------------- the splitter


def test_split_is_stratified_by_class_with_the_fractions() -> None:
    recs = records({"BA": 100, "PMY": 37, "LY": 3})
    got = split_records(recs, (0.8, 0.1, 0.1), seed=0)
    per = Counter((r.cls, r.split) for r in got)
    assert (per["BA", "train"], per["BA", "val"], per["BA", "test"]) == (80, 10, 10)
    assert (per["PMY", "val"], per["PMY", "test"]) == (4, 4) and per["PMY", "train"] == 29
    assert (per["LY", "train"], per["LY", "val"], per["LY", "test"]) == (1, 1, 1)  # at least one each
    assert [r.path for r in got] == sorted(r.path for r in recs)


def test_split_depends_on_the_seed_not_on_input_order() -> None:
    recs = records({"BA": 30, "EO": 20})
    a = split_records(recs, (0.8, 0.1, 0.1), seed=5)
    shuffled = [recs[i] for i in np.random.default_rng(0).permutation(len(recs))]
    assert split_records(shuffled, (0.8, 0.1, 0.1), seed=5) == a
    assert split_records(recs, (0.8, 0.1, 0.1), seed=6) != a
    # a class's split does not depend on the other classes present
    only_ba = split_records(records({"BA": 30}), (0.8, 0.1, 0.1), seed=5)
    assert [r.split for r in only_ba] == [r.split for r in a if r.cls == "BA"]


def test_split_refuses_classes_too_small_to_split() -> None:
    with pytest.raises(UserError, match=r"too few images to split by class: MY \(2\)"):
        split_records(records({"BA": 10, "MY": 2}), (0.8, 0.1, 0.1), seed=0)
    everything_train = split_records(records({"MY": 2}), (1.0, 0.0, 0.0), seed=0)
    assert {r.split for r in everything_train} == {"train"}


def test_the_splitter_takes_plain_keys_and_any_class_name() -> None:
    """One splitter for prepare, build's paper protocol and classify's plain trees: keys and classes in, names out."""
    recs = records({"BA": 30, "EO": 20})
    keys, classes = [r.path for r in recs], [r.cls for r in recs]
    by_key = dict(zip(keys, stratified_split(keys, classes, (0.8, 0.1, 0.1), seed=5)))
    assert [r.split for r in split_records(recs, (0.8, 0.1, 0.1), seed=5)] == [by_key[k] for k in sorted(keys)]
    other = stratified_split([f"weird/{i}.png" for i in range(10)], ["weird"] * 10, (0.8, 0.1, 0.1), seed=0)
    assert sorted(other) == ["test"] + ["train"] * 8 + ["val"]
    assert other != stratified_split([f"odd/{i}.png" for i in range(10)], ["odd"] * 10, (0.8, 0.1, 0.1), seed=0)


def test_subsample_is_seeded_and_capped_per_class() -> None:
    recs = records({"BA": 20, "EO": 3})
    a = subsample(recs, 5, seed=1)
    assert Counter(r.cls for r in a) == {"BA": 5, "EO": 3}
    assert subsample(list(reversed(recs)), 5, seed=1) == a
    assert subsample(recs, 5, seed=2) != a


def test_count_records_skips_curated_images() -> None:
    recs = split_records(records({"BA": 10, "LY": 10}), (0.8, 0.1, 0.1), seed=0)
    recs[0] = replace(recs[0], excluded="multi_wbc")
    c = count_records(recs)
    assert c["images"] == 19 and c["curated_out"] == {"BA": 1}
    assert c["per_class"]["LY"] == {"total": 10, "train": 8, "val": 1, "test": 1}
    assert sum(c["per_split"].values()) == 19 and c["per_class"]["MO"]["total"] == 0


# ---------------------------------------------------------------- duplicates


def test_duplicates_keep_one_copy_in_a_class_and_none_across_classes() -> None:
    a = Record("test/BA/a.jpg", "BA", "BA", "h1", 1, 1, "RGB", "test")
    b = Record("train/BA/b.jpg", "BA", "BA", "h1", 1, 1, "RGB", "train")
    c = Record("train/EO/c.jpg", "EO", "EO", "h2", 1, 1, "RGB", "train")
    d = Record("train/BNE/d.jpg", "BNE", "BNE", "h2", 1, 1, "RGB", "train")
    e = Record("train/LY/e.jpg", "LY", "LY", "h3", 1, 1, "RGB", "train")
    kept, dropped = drop_duplicates([a, b, c, d, e])
    assert kept == [b, e]  # the copy in the earliest split wins
    reasons = {x.path: x.reason for x in dropped}
    assert reasons == {
        "test/BA/a.jpg": "duplicate",
        "train/EO/c.jpg": "duplicate_conflict",
        "train/BNE/d.jpg": "duplicate_conflict",
    }
    assert "train/BA/b.jpg" in next(x.detail for x in dropped if x.path == "test/BA/a.jpg")


# ---------------------------------------------------------------- records.csv


def test_records_csv_round_trips_and_rejects_other_files(tmp_path: Path) -> None:
    recs = split_records(records({"BA": 5, "PLT": 4}), (0.6, 0.2, 0.2), seed=0)
    recs.append(Record('odd/na,me "q".jpg', "LY", "odd", "ff", 359, 366, "L", "train", "multi_wbc"))
    write_records(tmp_path / "records.csv", recs)
    assert read_records(tmp_path / "records.csv") == recs
    assert (tmp_path / "records.csv").read_text().splitlines()[0] == ",".join(RECORD_COLUMNS)
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match="other.csv is not a naturalize records file.*naturalize prepare"):
        read_records(tmp_path / "other.csv")


@pytest.mark.parametrize("text", ["{", '"root"', '{"seed": 0}'])
def test_a_prepared_folder_with_a_damaged_summary_is_one_error_naming_it(tmp_path: Path, text: str) -> None:
    """segment reads a prepared folder's summary.json for the PBC root: a damaged one (not JSON, or no root) is a
    UserError naming the file and the fix (it was a JSONDecodeError or KeyError traceback)."""
    write_records(tmp_path / "records.csv", records({"BA": 3}))
    (tmp_path / "summary.json").write_text(text)
    with pytest.raises(
        UserError,
        match=r"summary\.json is (damaged|not a JSON object|not a naturalize prepare summary).*naturalize prepare",
    ):
        load_sources(tmp_path, progress=False)


# ---------------------------------------------------------------- reading one file


def _jpeg(size=(40, 30), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, 128).save(buf, format="JPEG" if mode != "RGBA" else "PNG")
    return buf.getvalue()


def test_read_image_info_hashes_decodes_and_names_the_reason(tmp_path: Path) -> None:
    import hashlib

    good = tmp_path / "good.jpg"
    good.write_bytes(_jpeg())
    assert read_image_info(str(good)) == (hashlib.sha256(good.read_bytes()).hexdigest(), 40, 30, "RGB")
    rgba = tmp_path / "rgba.png"
    rgba.write_bytes(_jpeg((7, 9), "RGBA"))
    assert read_image_info(str(rgba))[1:] == (7, 9, "RGBA")
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert read_image_info(str(tmp_path / "empty.jpg")) == ("empty", "zero-byte file")
    (tmp_path / ".DS_Store").write_bytes(b"\0\0\0\1Bud1" * 20)
    assert read_image_info(str(tmp_path / ".DS_Store")) == ("non_image", "not an image file")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(_jpeg((300, 300))[:400])
    reason, detail = read_image_info(str(cut))
    assert reason == "unreadable" and "truncated" in detail
    assert read_image_info(str(tmp_path / "missing.jpg"))[0] == "unreadable"


@pytest.mark.parametrize(
    "folders, layout",
    [
        (["PBC_dataset_normal_DIB/basophil", "PBC_dataset_normal_DIB/ig"], "release"),
        (["basophil", "platelet"], "release"),
        (["BA", "pmy"], "classes"),
        (["train/BA", "val/BA", "test/BA"], "split"),
    ],
)
def test_detect_layout(tmp_path: Path, folders: list[str], layout: str) -> None:
    for f in folders:
        (tmp_path / f).mkdir(parents=True)
    got, root = detect_layout(tmp_path)
    assert got == layout
    assert root == (tmp_path / "PBC_dataset_normal_DIB" if folders[0].startswith("PBC") else tmp_path)


def test_detect_layout_names_the_expected_folders(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    with pytest.raises(UserError, match="has no PBC layout: expected the release's folders .*basophil"):
        detect_layout(tmp_path)
    with pytest.raises(UserError, match="does not exist"):
        detect_layout(tmp_path / "nope")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(UserError, match="is not a folder"):
        detect_layout(tmp_path / "file.txt")
