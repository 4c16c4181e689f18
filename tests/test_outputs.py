"""naturalize.outputs.claim_settled: the claim / compare settings / --overwrite / marker sequence that build, demo
and the drawn set share; claim's refusal of a user's folder, worded for commands with and without --overwrite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from naturalize.fsio import UserError
from naturalize.outputs import MARKER, claim, claim_settled, read_marker, read_record


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


def test_read_record_is_none_for_a_missing_or_damaged_record(tmp_path: Path) -> None:
    assert read_record(tmp_path / "none.json") is None
    (tmp_path / "bad.json").write_text("{not json")
    assert read_record(tmp_path / "bad.json") is None
    (tmp_path / "ok.json").write_text('{"a": 1}')
    assert read_record(tmp_path / "ok.json") == {"a": 1}
