"""The pure layout of `naturalize build` without real data: where real and synthetic files go under each protocol."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from naturalize.build import Item, _write_tree, count_items, foreign_files, layout_items, resolve_recipe
from naturalize.fsio import UserError
from naturalize.prepare import split_records
from naturalize.protocols import CLEAN, PAPER
from naturalize.records import Record

ROOT, OUT = Path("/pbc"), Path("/data/ds")


def _real() -> list[Record]:
    recs = [
        Record(f"{c}/{c}_{i}.jpg", c, c, f"{c}{i}", 360, 363, "RGB")
        for c, n in (("PMY", 20), ("LY", 30))
        for i in range(n)
    ]
    return split_records(recs, (0.8, 0.1, 0.1), seed=0)


def _synthetic() -> dict[str, list[Path]]:
    return {"PMY": [OUT / "synthetic" / "PMY" / f"PMY_syn_0_{i}.jpg" for i in range(40)]}


def test_clean_protocol_keeps_real_splits_and_puts_synthetic_in_train_only() -> None:
    real = _real()
    items = layout_items(real, ROOT, _synthetic(), CLEAN, OUT, 0, (0.8, 0.1, 0.1))
    syn = [i for i in items if i.origin == "synthetic"]
    assert len(syn) == 40 and {i.split for i in syn} == {"train"}
    assert syn[0].source == "synthetic/PMY/PMY_syn_0_0.jpg" and syn[0].name == "PMY_syn_0_0.jpg"
    assert {(i.source, i.split) for i in items if i.origin == "real"} == {(r.path, r.split) for r in real}
    counts = count_items(items)
    assert counts["train"]["PMY"] == {"real": 16, "synthetic": 40}
    assert counts["test"]["PMY"] == {"real": 2, "synthetic": 0} and counts["val"]["LY"]["real"] == 3


def test_paper_protocol_pools_then_splits_every_class() -> None:
    items = layout_items(_real(), ROOT, _synthetic(), PAPER, OUT, 0, (0.8, 0.1, 0.1))
    per = Counter((i.split, i.cls) for i in items)
    assert (per["train", "PMY"], per["val", "PMY"], per["test", "PMY"]) == (48, 6, 6)  # 60 pooled
    assert {i.split for i in items if i.origin == "synthetic"} == {"train", "val", "test"}
    assert sum(per.values()) == 90
    assert layout_items(_real(), ROOT, _synthetic(), PAPER, OUT, 0, (0.8, 0.1, 0.1)) == items


def test_the_paper_split_does_not_depend_on_where_the_folders_are() -> None:
    """The paper protocol sorted the pooled images by absolute path before its seeded split, so the PBC folder and
    the dataset folder at other places (another machine, a moved tree) interleaved real and synthetic images
    otherwise and the same seed put other images in test (10 of 40 PMY files moved). It keys them by their
    dataset-relative source now."""

    def splits(root: Path, out: Path) -> dict[str, str]:
        syn = {"PMY": [out / "synthetic" / "PMY" / f"PMY_syn_0_{i}.jpg" for i in range(40)]}
        return {i.source: i.split for i in layout_items(_real(), root, syn, PAPER, out, 0, (0.8, 0.1, 0.1))}

    assert splits(Path("/a/PBC"), Path("/z/ds")) == splits(Path("/z/PBC"), Path("/a/ds"))


def test_recipe_options_are_checked() -> None:
    assert resolve_recipe("1k-pbc", per_class=5).synthetic_counts({"PMY": 1011})["BNE"] == 5
    assert resolve_recipe("419-pmy", classes=("MY",)).classes == ("MY",)
    with pytest.raises(UserError, match="--per-class -1 must be >= 0"):
        resolve_recipe("1k-pbc", per_class=-1)


def test_a_rebuilt_tree_replaces_only_what_the_last_build_linked(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (src / name).write_bytes(name.encode())
    out = tmp_path / "ds"
    first = [
        Item("train", "PMY", src / "a.jpg", "a.jpg", "real", "a"),
        Item("test", "LY", src / "b.jpg", "b.jpg", "real", "b"),
    ]
    _write_tree(out, first)
    assert foreign_files(out) == []
    (out / "train" / "PMY" / "notes.txt").write_text("mine\n")
    assert foreign_files(out) == [out / "train" / "PMY" / "notes.txt"]  # build refuses to rebuild over it
    (out / "train" / "PMY" / "notes.txt").unlink()
    _write_tree(out, [Item("train", "MY", src / "c.jpg", "c.jpg", "real", "c")])
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["files.csv", "train/MY/c.jpg"]  # the old files and the folders they leave empty are gone
    assert sorted(p.name for p in src.iterdir()) == ["a.jpg", "b.jpg", "c.jpg"]  # the linked inputs are untouched
    assert not (out / "test").exists() and foreign_files(out) == []
    # a files.csv edited to name files outside the tree: those are never removed, nor is a folder of the user's
    outside = tmp_path / "outside.txt"
    outside.write_text("mine\n")
    (out / "train" / "mine").mkdir()
    with (out / "files.csv").open("a") as f:
        f.write(
            f"train,MY,../outside.txt,real,x\ntrain,MY,train/MY/../../../outside.txt,real,x\ntrain,MY,{outside},real,x\n"
        )
    _write_tree(out, [Item("val", "LY", src / "a.jpg", "a.jpg", "real", "a")])
    assert outside.read_text() == "mine\n" and (out / "train" / "mine").is_dir()
    assert all((src / n).is_file() for n in ("a.jpg", "b.jpg", "c.jpg"))  # the linked inputs stay
