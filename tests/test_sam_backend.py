"""The segment-anything backend for real: a vit_b with random weights saved as a .pth, loaded through
--checkpoint. Its masks are meaningless; the plumbing (one encoding per image, batched prompts, masks
-> cells -> bank) and the checkpoint/device errors are what is tested."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import numpy as np
import pytest

from naturalize.bank import Bank
from naturalize.testing.cli import run_cli

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A vit_b checkpoint with random (seeded) weights."""
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sam") / "random_vit_b.pth"
    torch.save(sam_model_registry["vit_b"]().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def tree(sample_release: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-image SNE tree (a copy in tmp; the sample itself is never written)."""
    src = sorted((sample_release / "neutrophil").glob("SNE_*.jpg"))[0]
    root = tmp_path_factory.mktemp("tree")
    (root / "SNE").mkdir()
    shutil.copy(src, root / "SNE" / src.name)
    return root


cli = functools.partial(run_cli, "naturalize")


@pytest.mark.slow
def test_sam_backend_writes_a_bank_from_one_encoding(
    checkpoint: Path, tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from segment_anything import SamPredictor

    from naturalize.segment.run import read_rgb, segment
    from naturalize.segment.sam import SamSegmenter

    # spies: they record and call the real methods
    encoded, predictors, results = [], [], []
    real_set_image, real_masks = SamPredictor.set_image, SamSegmenter.masks

    def set_image(self, im, *a, **k):
        encoded.append(im.shape)
        predictors.append(self)
        return real_set_image(self, im, *a, **k)

    def masks(self, rgb):
        results.append(real_masks(self, rgb))
        return results[-1]

    monkeypatch.setattr(SamPredictor, "set_image", set_image)
    monkeypatch.setattr(SamSegmenter, "masks", masks)
    monkeypatch.setenv("NATURALIZE_SAM_CHECKPOINT", str(checkpoint))
    said: list[str] = []
    out = tmp_path / "bank"
    # no quality or size filter: the random model's masks all flow on to cells_from_masks and the bank
    summary = segment(
        tree,
        out,
        backend="auto",
        device="cpu",
        points_per_side=3,
        progress=False,
        echo=said.append,
        backend_params={"pred_iou_thresh": 0.0, "stability_thresh": 0.0, "min_area": 1, "max_area_frac": 1.0},
    )
    assert said[0].startswith("backend auto -> sam")
    assert len(encoded) == 1  # one image encoding for the centre prompt and all 9 grid prompts
    assert summary.written == 1

    # the centre mask (first) is what SamPredictor.predict gives for a centre click (best of three)
    src = next((tree / "SNE").iterdir())
    rgb = read_rgb(str(src))
    h, w = rgb.shape[:2]
    got, scores = results[0]
    assert got and all(m.dtype == bool and m.shape == (h, w) for m in got) and len(scores) == len(got)
    ref, ref_iou, _ = predictors[0].predict(np.array([[w / 2.0, h / 2.0]]), np.array([1]), multimask_output=True)
    best = ref[int(np.argmax(ref_iou))]
    assert (got[0] == best).mean() > 0.999 and scores[0] == pytest.approx(float(ref_iou.max()), abs=1e-4)

    bank = Bank.open(out)
    assert bank.meta["backend"] == "sam"
    p = bank.meta["parameters"]
    assert (p["model_type"], p["checkpoint"], p["points_per_side"], p["pred_iou_thresh"]) == (
        "vit_b",
        checkpoint.name,
        3,
        0.0,
    )
    assert [r["source"] for r in bank.curation] == [f"SNE/{src.name}"]
    g = bank.backgrounds[0]
    assert bank.load_background(g).shape == (g.height, g.width, 3)
    for s in bank.sprites:
        assert bank.load_sprite(s).shape == (s.y1 - s.y0, s.x1 - s.x0, 4)
    # SAM's masks went through assign and the same quality gate as the classical ones
    from naturalize.segment.gate import REASONS

    # (random weights: whatever cells the masks give; the same `encode` and gate as the classical backend)
    assert all(s.reason in REASONS and 0 <= s.quality <= 1 for s in bank.sprites)
    gate = bank.meta["counts"]["gate"]
    assert sum(n for per in gate.values() for n in per.values()) == len(bank.sprites)
    assert all(s.reason == "ok" for k in ("RBC", "WBC", "PLT") for s in bank.select(k))
    assert {"usable", "gate", "kinds"} <= set(p)  # the rules the sprites passed are part of the identity
    assert (bank.root / "qc" / "index.html").is_file()


def test_checkpoint_errors_name_the_fix(checkpoint: Path, tree: Path, tmp_path: Path) -> None:
    from naturalize.fsio import UserError
    from naturalize.segment.run import segment

    out = tmp_path / "bank"

    def error(**kw) -> str:
        with pytest.raises(UserError) as e:
            segment(tree, out, **{"backend": "sam", "device": "cpu", "progress": False, "echo": lambda m: None, **kw})
        return str(e.value)

    line = error(checkpoint=str(tmp_path / "nope.pth"))
    assert "not found" in line and "fetch-sam" in line
    folder = tmp_path / "sam"
    folder.mkdir()
    (folder / "sam_vit_b_01ec64.pth").write_bytes(b"")
    line = error(checkpoint=str(folder))
    assert "is a directory (it holds sam_vit_b_01ec64.pth)" in line and "checkpoint file itself" in line
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint" * 10)
    assert "not a readable PyTorch checkpoint" in error(checkpoint=str(junk))
    if not torch.cuda.is_available():
        assert "--device cpu" in error(checkpoint=str(checkpoint), device="cuda")
    assert not out.exists()
    # through the command line: one line, exit code 2, nothing written
    proc = cli(
        "segment",
        str(tree),
        "--out",
        str(out),
        "--backend",
        "sam",
        "--checkpoint",
        str(checkpoint),
        "--model-type",
        "vit_l",
        "--device",
        "cpu",
    )
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "holds SAM vit_b weights" in lines[0] and "--model-type vit_b" in lines[0]
    proc = cli("segment", str(tree), "--out", str(out), "--backend", "sam", env={"NATURALIZE_SAM_CHECKPOINT": ""})
    assert proc.returncode == 2 and "--checkpoint" in proc.stderr
    assert not out.exists()


def test_weights_that_do_not_fit_are_reported(tmp_path: Path) -> None:
    from naturalize.fsio import UserError
    from naturalize.segment.sam import build_model

    state = {
        "image_encoder.patch_embed.proj.weight": torch.zeros(768, 3, 16, 16),
        "image_encoder.pos_embed": torch.zeros(1, 8, 8, 768),
    }
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(UserError, match="does not fit SAM vit_b"):
        build_model(path, "vit_b", "cpu")


def test_point_grid_covers_the_image() -> None:
    from naturalize.segment.sam import point_grid

    g = point_grid(360, 363, 4)
    assert g.shape == (16, 2)
    assert np.allclose(sorted(set(g[:, 0])), [45, 135, 225, 315])
    assert g[:, 1].min() > 0 and g[:, 1].max() < 363


def test_a_bank_is_not_resumed_with_other_weights(checkpoint: Path, tree: Path, tmp_path: Path) -> None:
    """Other weights in a file of the same name and size (a fine-tuned vit_b) are another bank: bank.json names
    the checkpoint's MD5 (the digest fetch-sam verifies) and a rerun with other weights is refused."""
    from naturalize import records
    from naturalize.bank import BankWriter
    from naturalize.fetch import file_digests
    from naturalize.fsio import UserError
    from naturalize.segment.run import bank_identity, resolve_backend, segment

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state["mask_decoder.iou_prediction_head.layers.2.bias"] += 1.0
    other = tmp_path / "tuned" / checkpoint.name
    other.parent.mkdir()
    torch.save(state, other)
    assert other.stat().st_size == checkpoint.stat().st_size  # name and size cannot tell them apart
    out = tmp_path / "bank"
    values = {"checkpoint": str(checkpoint), "model_type": "vit_b", "device": "cpu", "points_per_side": 1}
    name, options, _ = resolve_backend("sam", values)
    root, _ = records.load_sources(tree, progress=False)
    identity = bank_identity(name, options, tree, root, None)
    assert identity["parameters"]["checkpoint_md5"] == file_digests(checkpoint)[0]
    BankWriter.open(out, identity)  # the bank a first run with `checkpoint` starts
    with pytest.raises(UserError, match=r"other settings \(parameters \(checkpoint_md5\) differ\)"):
        segment(tree, out, "sam", str(other), device="cpu", points_per_side=1, progress=False, echo=lambda m: None)
