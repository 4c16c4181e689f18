"""The backend registry: each backend owns its options, validation, auto rule and identity."""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

import pytest

from naturalize.fsio import UserError
from naturalize.segment import BACKENDS, CHECKPOINT_ENV, backend_help, resolve_backend
from naturalize.segment.assign import UsableRules
from naturalize.segment.classical import ClassicalParams
from naturalize.segment.gate import GateRules


def test_help_lists_every_backend() -> None:
    text = backend_help()
    assert all(name in text for name in BACKENDS) and text.startswith("auto | ")


def test_auto_picks_sam_only_with_a_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CHECKPOINT_ENV, raising=False)
    assert resolve_backend("auto", {})[0] == "classical"
    ckpt = tmp_path / "sam.pth"
    ckpt.write_bytes(b"x")
    name, options, why = resolve_backend("auto", {"checkpoint": str(ckpt), "points_per_side": 8})
    assert (name, options["checkpoint"], options["points_per_side"]) == ("sam", str(ckpt), 8) and "sam" in why
    monkeypatch.setenv(CHECKPOINT_ENV, str(ckpt))
    assert resolve_backend("auto", {})[0] == "sam"


def test_each_backend_validates_its_own_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CHECKPOINT_ENV, raising=False)
    with pytest.raises(UserError, match="no parameter wbc_magic"):
        resolve_backend("classical", {"params": {"wbc_magic": 1}})
    assert resolve_backend("classical", {"params": {"fg_delta": 20.0}})[1] == {"fg_delta": 20.0}
    with pytest.raises(UserError, match="needs a checkpoint"):
        resolve_backend("sam", {})
    with pytest.raises(UserError, match="not found"):
        resolve_backend("sam", {"checkpoint": str(tmp_path / "nope.pth")})
    with pytest.raises(UserError, match="unknown backend"):
        resolve_backend("magic", {})
    ckpt = tmp_path / "sam.pth"
    ckpt.write_bytes(b"x")
    # a misspelt SAM threshold (docs/segmentation.md names them) or model type: one line, before torch is loaded
    with pytest.raises(UserError, match=r"no parameter pred_iou_threshold; .*pred_iou_thresh"):
        resolve_backend("sam", {"checkpoint": str(ckpt), "params": {"pred_iou_threshold": 0.8}})
    with pytest.raises(UserError, match="unknown --model-type 'vit_x'"):
        resolve_backend("sam", {"checkpoint": str(ckpt), "model_type": "vit_x"})
    opts = resolve_backend("sam", {"checkpoint": str(ckpt), "params": {"pred_iou_thresh": 0.8}})[1]
    assert opts["pred_iou_thresh"] == 0.8


def test_identity_holds_every_threshold() -> None:
    d = BACKENDS["classical"].describe()
    assert {f.name for f in fields(ClassicalParams)} <= set(d)
    assert set(d["usable"]) == {f.name for f in fields(UsableRules)}
    assert set(d["gate"]) == {f.name for f in fields(GateRules)}
    assert BACKENDS["classical"].describe(fg_delta=20.0) != d


def test_sam_settings_are_checked_and_reach_the_banks_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--sam-set's values (segment's and build's) become SamParams fields in the options and in bank.json's
    parameters; --points is one of them; a value out of its range is refused from Python too."""
    from naturalize.build import SegmentOptions, _build_params, _segment_backend
    from naturalize.compose.params import ComposeParams
    from naturalize.protocols import get_protocol
    from naturalize.recipes import resolve_recipe

    monkeypatch.delenv(CHECKPOINT_ENV, raising=False)
    ckpt = tmp_path / "sam.pth"
    ckpt.write_bytes(b"x")
    values = {"checkpoint": str(ckpt), "sam_settings": {"min_area": 40, "box_nms_thresh": 0.5}, "points_per_side": 8}
    _, options, _ = resolve_backend("sam", values)
    described = BACKENDS["sam"].describe(**options)
    assert (described["min_area"], described["box_nms_thresh"], described["points_per_side"]) == (40, 0.5, 8)
    with pytest.raises(UserError, match=r"backend_params: max_area_frac=2.0 is not a number in 0.0..1.0"):
        resolve_backend("sam", {"checkpoint": str(ckpt), "params": {"max_area_frac": 2.0}})
    # build: its SegmentOptions hand the settings to segment (the same values) and dataset.json records them
    seg = _segment_backend(SegmentOptions("auto", str(ckpt), sam_settings={"min_area": 40}), lambda m: None)
    assert seg.backend == "sam" and resolve_backend(seg.backend, seg.values())[1]["min_area"] == 40
    recipe, protocol = resolve_recipe("2k-pbc", (), None), get_protocol("clean")
    params = _build_params(recipe, protocol, 0, (0.8, 0.1, 0.1), tmp_path, seg, None, ComposeParams())
    assert params["sam_settings"] == {"min_area": 40}
    plain = replace(seg, sam_settings={})  # a dataset built without --sam-set keeps the parameters it had
    assert "sam_settings" not in _build_params(
        recipe, protocol, 0, (0.8, 0.1, 0.1), tmp_path, plain, None, ComposeParams()
    )
