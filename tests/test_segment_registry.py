"""The backend registry: each backend owns its options, validation, auto rule and identity."""

from __future__ import annotations

from dataclasses import fields
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
