"""Atomic output (naturalize/fsio.py): a write either replaces the file whole or leaves the old one."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from naturalize.fsio import (
    UserError,
    atomic_open,
    atomic_path,
    link_or_copy,
    read_json,
    read_object,
    write_bytes,
    write_json,
    write_text,
)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_atomic_open_replaces_the_file_on_success(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "out.txt"  # parents are made
    with atomic_open(target) as f:
        f.write("first")
        assert not target.exists()  # nothing visible until the write is complete
    assert target.read_text() == "first"
    with atomic_open(target, "wb") as f:
        f.write(b"second")
    assert target.read_bytes() == b"second" and _leftovers(target.parent) == []


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "keep.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_open(target) as f:
            f.write("half of the new")
            raise RuntimeError("boom")
    assert target.read_text() == "old" and _leftovers(tmp_path) == []
    with pytest.raises(KeyboardInterrupt):  # also when the user interrupts
        with atomic_open(tmp_path / "new.txt") as f:
            f.write("x")
            raise KeyboardInterrupt
    assert not (tmp_path / "new.txt").exists() and _leftovers(tmp_path) == []


def test_written_files_get_the_usual_permissions_not_the_temporary_files_0600(tmp_path: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    write_text(tmp_path / "a.txt", "x")
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o666 & ~umask


def test_write_helpers_give_stable_bytes(tmp_path: Path) -> None:
    write_json(tmp_path / "a.json", {"b": [1, 2], "a": {"z": 1, "y": None}})
    write_json(tmp_path / "b.json", {"a": {"y": None, "z": 1}, "b": [1, 2]})
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert (tmp_path / "a.json").read_text().startswith('{\n  "a": {\n    "y": null')
    write_text(tmp_path / "t.txt", "é\nline\n")
    assert (tmp_path / "t.txt").read_bytes() == "é\nline\n".encode()
    write_bytes(tmp_path / "b.bin", b"\0\1")
    assert (tmp_path / "b.bin").read_bytes() == b"\0\1"


def test_atomic_path_gives_a_named_temporary_and_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "model.keras"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target, suffix=".keras") as tmp:
            assert tmp.parent == tmp_path and tmp.suffix == ".keras" and not tmp.exists()
            tmp.write_text("half")
            raise RuntimeError("writer died")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]
    with atomic_path(target, suffix=".keras") as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]


def test_link_or_copy_of_a_symbolic_link_links_the_file_it_points_to(tmp_path: Path) -> None:
    """The demo's --pbc subset is symbolic links; build hard-linked them, and os.link links a symbolic link itself, so
    the dataset held links, which build's rerun refused as not its own (246 files of a finished `demo --pbc`)."""
    src = tmp_path / "a.jpg"
    src.write_bytes(b"pixels")
    (tmp_path / "link.jpg").symlink_to(src)
    link_or_copy(tmp_path / "link.jpg", tmp_path / "hard.jpg")
    assert not (tmp_path / "hard.jpg").is_symlink() and (tmp_path / "hard.jpg").read_bytes() == b"pixels"
    assert src.stat().st_nlink == 2 and src.read_bytes() == b"pixels"


def test_link_or_copy_links_and_never_touches_the_source(tmp_path: Path) -> None:
    src = tmp_path / "a.jpg"
    src.write_bytes(b"pixels")
    link_or_copy(src, tmp_path / "hard.jpg")
    link_or_copy(src, tmp_path / "soft.jpg", symbolic=True)
    assert (tmp_path / "hard.jpg").read_bytes() == b"pixels" and src.stat().st_nlink == 2
    assert os.readlink(tmp_path / "soft.jpg") == str(src.resolve())
    assert src.read_bytes() == b"pixels"


def test_read_json_reads_json_and_turns_a_damaged_file_into_the_given_user_error(tmp_path: Path) -> None:
    write_json(tmp_path / "ok.json", {"a": [1, 2]})
    assert read_json(tmp_path / "ok.json", "unused") == {"a": [1, 2]}
    for name, data in (("cut.json", b'{"a": [1,'), ("latin1.json", b'{"a": "\xe9"}')):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(UserError) as e:
            read_json(tmp_path / name, f"{name} is damaged; rebuild it")
        assert str(e.value) == f"{name} is damaged; rebuild it"


def test_read_object_names_the_file_and_the_fix_for_a_damaged_file_and_for_other_json(tmp_path: Path) -> None:
    write_json(tmp_path / "ok.json", {"a": 1})
    assert read_object(tmp_path / "ok.json", "unused") == {"a": 1}
    for name, data, what in (("cut.json", "{", "is damaged (not JSON)"), ("list.json", "[1]", "is not a JSON object")):
        (tmp_path / name).write_text(data)
        with pytest.raises(UserError) as e:
            read_object(tmp_path / name, "rebuild it")
        assert str(e.value) == f"{tmp_path / name} {what}; rebuild it"
