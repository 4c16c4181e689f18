"""naturalize.outputs.claim_settled: the claim / compare settings / --overwrite / marker sequence that build, demo
and the drawn set share; dropped_if_unused after a failed command; claim's refusal of a user's folder, worded for
commands with and without --overwrite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from naturalize.fsio import UserError
from naturalize.outputs import MARKER, claim, claim_settled, dropped_if_unused, read_marker, read_record, write_marker


def _claim(out: Path, settings: dict, overwrite: bool = False, redo_same: bool = True) -> None:
    claim_settled(
        out,
        "thing",
        ["thing.json", "made"],
        record="thing.json",
        differs=lambda old: old.get("settings") != settings,
        overwrite=overwrite,
        refusal=f"{out} holds a thing of other settings",
        redo_same=redo_same,
    )


def _make(out: Path, settings: dict) -> None:
    """A run of the tool: claim, then write its record and one output file."""
    _claim(out, settings)
    (out / "thing.json").write_text(json.dumps({"settings": settings}))
    (out / "made").write_text("output\n")


def test_new_folder_gets_the_marker_and_same_settings_resume(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _make(out, {"seed": 0})
    assert read_marker(out)["written"] == ["made", "thing.json"]
    _claim(out, {"seed": 0})  # resume: nothing removed
    assert (out / "made").read_text() == "output\n"


def test_other_settings_are_refused_unless_overwrite_which_removes_only_what_the_tool_wrote(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _make(out, {"seed": 0})
    (out / "notes.txt").write_text("mine\n")
    with pytest.raises(UserError, match=r"holds a thing of other settings$"):
        _claim(out, {"seed": 1})
    assert (out / "made").is_file()
    _claim(out, {"seed": 1}, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "notes.txt"]
    assert (out / "notes.txt").read_text() == "mine\n"


def test_redo_same_false_keeps_an_output_of_the_same_settings_under_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _make(out, {"seed": 0})
    _claim(out, {"seed": 0}, overwrite=True, redo_same=False)
    assert (out / "made").is_file()
    _claim(out, {"seed": 0}, overwrite=True)
    assert not (out / "made").exists()


def test_a_folder_of_the_users_files_is_refused_even_with_overwrite(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine\n")
    with pytest.raises(UserError, match="not written by naturalize"):
        _claim(tmp_path / "mine", {"seed": 0}, overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine\n" and not (tmp_path / "mine" / MARKER).exists()


def test_the_refusal_mentions_overwrite_only_for_a_command_that_has_it(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine\n")
    with pytest.raises(UserError, match="not written by naturalize") as without:
        claim(tmp_path / "mine", "classify-run")  # classify train, evaluate, explain, naturalize realism
    assert "--overwrite" not in str(without.value) and "nothing in it is touched: choose" in str(without.value)
    with pytest.raises(UserError, match="nothing in it is touched, even with --overwrite: choose"):
        claim(tmp_path / "mine", "bank", has_overwrite=True)  # segment, compose, prepare, build, demo
    assert not (tmp_path / "mine" / MARKER).exists()


def _fail_after_marker(out: Path, extra: str | None = None) -> None:
    with pytest.raises(RuntimeError), dropped_if_unused(out):
        write_marker(out, "thing", ["made"])
        if extra:
            (out / extra).write_text("partial\n")
        raise RuntimeError("the work failed")


def test_a_failed_command_leaves_no_folder_holding_only_its_marker_and_nothing_else_is_removed(tmp_path: Path) -> None:
    _fail_after_marker(tmp_path / "new" / "deeper" / "out")
    assert list(tmp_path.iterdir()) == []  # the folder and the parents this run created are gone
    (tmp_path / "empty").mkdir()
    _fail_after_marker(tmp_path / "empty")
    assert (tmp_path / "empty").is_dir() and list((tmp_path / "empty").iterdir()) == []  # as it was
    _fail_after_marker(tmp_path / "partial", "made")
    assert (tmp_path / "partial" / "made").is_file() and (tmp_path / "partial" / MARKER).is_file()  # kept to resume
    (tmp_path / "earlier").mkdir()
    write_marker(tmp_path / "earlier", "thing", ["made"])
    _fail_after_marker(tmp_path / "earlier")
    assert (tmp_path / "earlier" / MARKER).is_file()  # an earlier run's marker is not this run's to remove
    with dropped_if_unused(tmp_path / "ok"):
        write_marker(tmp_path / "ok", "thing", ["made"])
    assert (tmp_path / "ok" / MARKER).is_file()  # success: kept


def test_read_record_is_none_for_a_missing_or_damaged_record(tmp_path: Path) -> None:
    assert read_record(tmp_path / "none.json") is None
    (tmp_path / "bad.json").write_text("{not json")
    assert read_record(tmp_path / "bad.json") is None
    (tmp_path / "ok.json").write_text('{"a": 1}')
    assert read_record(tmp_path / "ok.json") == {"a": 1}
