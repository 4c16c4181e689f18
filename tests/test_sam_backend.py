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
    real_set_image, real_masks = SamPredictor.set_image, SamSegmenter.counted_masks

    def set_image(self, im, *a, **k):
        encoded.append(im.shape)
        predictors.append(self)
        return real_set_image(self, im, *a, **k)

    def masks(self, rgb):
        results.append(real_masks(self, rgb))
        return results[-1]

    monkeypatch.setattr(SamPredictor, "set_image", set_image)
    monkeypatch.setattr(SamSegmenter, "counted_masks", masks)
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
    got, scores = results[0].masks, results[0].scores
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
    # every mask SAM decoded is counted: passed on to assign (the masks above) or dropped, for one reason
    m = bank.meta["counts"]["masks"]
    assert (m["images"], m["grid_prompts"], m["grid_masks"]) == (1, 9, 27)
    assert m["grid_kept"] + m["centre_kept"] == len(got)
    assert m["grid_masks"] == m["grid_kept"] + sum(m["grid_dropped"].values())
    assert m["centre_kept"] + sum(m["centre_dropped"].values()) == 1
    # and every mask passed on became a cell or was dropped by assign, for one reason
    assert m["assign_kept"] + sum(m["assign_dropped"].values()) == len(got)
    assert set(m["assign_dropped"]) == {"empty", "background", "duplicate"}


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


def _tiny_sam(points_per_side: int, points_per_batch: int, **thresholds: float):
    """SAM's own architecture at a tiny width and depth, random weights (as tests/test_registries.py builds it):
    prompting, filtering and counting run for real, in a second."""
    from segment_anything.build_sam import _build_sam

    from naturalize.segment.sam import SamParams, SamSegmenter

    torch.manual_seed(0)
    model = _build_sam(encoder_embed_dim=32, encoder_depth=1, encoder_num_heads=1, encoder_global_attn_indexes=())
    params = SamParams(points_per_side=points_per_side, points_per_batch=points_per_batch, **thresholds)
    return SamSegmenter(model.eval(), params)


@pytest.mark.parametrize(
    "thresholds",
    [
        {},  # the defaults: random weights, nearly every mask under the predicted-IoU threshold
        {"pred_iou_thresh": 0.0, "stability_thresh": 0.0, "min_area": 1000, "max_area_frac": 0.2},
    ],
)
def test_every_decoded_mask_is_passed_on_or_counted_under_one_reason(thresholds: dict) -> None:
    """points_per_side 4 decodes 16 grid prompts (and the centre one), in batches of 5; each grid prompt gives three
    candidate masks. Every mask is either among those `masks()` returns or counted under exactly one drop reason."""
    from naturalize.drawn import draw_image, image_rng
    from naturalize.segment.sam import CENTRE_DROP_REASONS, DROP_REASONS

    segmenter = _tiny_sam(4, 5, **thresholds)
    prompts: list[int] = []  # point prompts per decoder call, seen by the prompt encoder itself
    encoder = segmenter.predictor.model.prompt_encoder
    real_forward = encoder.forward

    def forward(points, boxes, masks):
        prompts.append(len(points[0]))
        return real_forward(points, boxes, masks)

    encoder.forward = forward
    rgb = draw_image("LY", image_rng(0, "LY", 0), 250, 320)
    found = segmenter.counted_masks(rgb)
    assert prompts == [1, 5, 5, 5, 1]  # the centre prompt, then 16 grid prompts in batches of 5
    c = found.counts.as_dict()
    assert (c["grid_prompts"], c["grid_masks"]) == (sum(prompts[1:]), 3 * sum(prompts[1:])) == (16, 48)
    assert set(c["grid_dropped"]) == set(DROP_REASONS) and set(c["centre_dropped"]) == set(CENTRE_DROP_REASONS)
    assert c["grid_masks"] == c["grid_kept"] + sum(c["grid_dropped"].values())
    assert c["centre_kept"] + sum(c["centre_dropped"].values()) == 1
    assert c["grid_kept"] + c["centre_kept"] == len(found.masks) == len(found.scores)
    masks, scores = segmenter.masks(rgb)  # masks() gives what it gave before: the masks and their scores
    assert scores == found.scores and all((a == b).all() for a, b in zip(masks, found.masks))
    seg = segmenter(rgb)  # the segmentation carries the counts on to the bank, with what assign made of the masks
    assigned = {k: seg.mask_counts.pop(k) for k in ("assign_kept", "assign_dropped")}
    assert seg.mask_counts == c
    assert assigned["assign_kept"] == len(seg.cells)
    assert assigned["assign_kept"] + sum(assigned["assign_dropped"].values()) == len(found.masks)
    if thresholds:  # with the quality filters off, the size filters and box NMS drop masks too
        assert c["grid_dropped"]["too_large"] > 0 and c["grid_dropped"]["duplicate"] > 0


@pytest.fixture(scope="module")
def tree2(sample_release: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-image tree, an SNE and an LY image (copies in tmp; the sample itself is never written)."""
    root = tmp_path_factory.mktemp("tree2")
    for folder, prefix in (("neutrophil", "SNE"), ("lymphocyte", "LY")):
        src = sorted((sample_release / folder).glob(f"{prefix}_*.jpg"))[0]
        (root / prefix).mkdir()
        shutil.copy(src, root / prefix / src.name)
    return root


@pytest.mark.slow
def test_sam_settings_from_the_command_line_reach_the_bank_whose_mask_counts_add_up(
    checkpoint: Path, tree2: Path, tmp_path: Path
) -> None:
    """`--sam-set` sets SamParams fields: bank.json records them, and its counts.masks count every mask SAM decoded
    on two real images: passed on to assign, or dropped for one reason. A resume keeps the counts."""
    import json

    out = tmp_path / "bank"
    settings = ["points_per_side=4", "pred_iou_thresh=0", "stability_thresh=0", "min_area=20", "max_area_frac=0.3"]
    args = ["segment", tree2, "--out", out, "--backend", "sam", "--checkpoint", checkpoint, "--device", "cpu"]
    args += [a for s in settings for a in ("--sam-set", s)] + ["--no-progress"]
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((out / "bank.json").read_text())
    p = meta["parameters"]
    assert (p["points_per_side"], p["pred_iou_thresh"], p["stability_thresh"], p["min_area"], p["max_area_frac"]) == (
        4,
        0.0,
        0.0,
        20,
        0.3,
    )
    m = meta["counts"]["masks"]
    assert (m["images"], m["grid_prompts"], m["grid_masks"]) == (2, 2 * 16, 2 * 48)  # 4 x 4 prompts per image
    assert m["grid_masks"] == m["grid_kept"] + sum(m["grid_dropped"].values())
    assert m["images"] == m["centre_kept"] + sum(m["centre_dropped"].values())
    assert sum(m["grid_dropped"].values()) > 0  # random weights: masks are dropped, and counted
    assert m["assign_kept"] + sum(m["assign_dropped"].values()) == m["grid_kept"] + m["centre_kept"]
    assert "masks before the gate: grid" in proc.stdout and f"cells {m['assign_kept']:,} of those" in proc.stdout
    qc = (out / "qc" / "index.html").read_text()
    assert "Masks SAM dropped before the gate" in qc and f"{m['assign_kept']} became cells" in qc
    # the same settings resume the bank (nothing left to do) and keep its mask counts
    proc = cli(*args)
    assert proc.returncode == 0 and "2 of 2 images already done" in proc.stderr, proc.stderr
    assert json.loads((out / "bank.json").read_text())["counts"]["masks"] == m


def test_a_bank_is_not_resumed_with_other_sam_settings(checkpoint: Path, tree: Path, tmp_path: Path) -> None:
    from naturalize import records
    from naturalize.bank import BankWriter
    from naturalize.segment.run import bank_identity, resolve_backend

    out = tmp_path / "bank"
    values = {"checkpoint": str(checkpoint), "device": "cpu", "sam_settings": {"pred_iou_thresh": 0.5}}
    name, options, _ = resolve_backend("sam", values)
    root, _ = records.load_sources(tree, progress=False)
    BankWriter.open(out, bank_identity(name, options, tree, root, None))  # what a run with 0.5 starts
    before = sorted(p.name for p in out.iterdir())
    args = ["segment", tree, "--out", out, "--checkpoint", checkpoint, "--device", "cpu", "--no-progress"]
    proc = cli(*args, "--sam-set", "pred_iou_thresh=0.6")
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr
    assert "other settings (parameters (pred_iou_thresh) differ)" in lines[0] and "--overwrite" in lines[0]
    assert sorted(p.name for p in out.iterdir()) == before


def test_a_banks_mask_counts_sum_its_images_survive_a_resume_and_show_on_the_qc_page(tmp_path: Path) -> None:
    """The bank's writer sums each image's mask counts into bank.json's counts.masks, a resume keeps them (they are
    in no CSV), the run's summary and the QC page show them; a classical bank has none (drawn images, tiny SAM)."""
    import json

    from naturalize.bank import BankWriter
    from naturalize.drawn import write_drawn_release
    from naturalize.segment import make_segmenter
    from naturalize.segment.qc import write_qc
    from naturalize.segment.run import RunSummary, Task, format_summary, segment_one

    root = write_drawn_release(tmp_path / "drawn", {"LY": 1, "SNE": 1}, classes=("LY", "SNE"), progress=False)
    tasks = [
        Task(str(p), p.relative_to(root).as_posix(), p.name.split("_")[0], p.stem) for p in sorted(root.rglob("*.jpg"))
    ]
    assert len(tasks) == 2
    segmenter = _tiny_sam(4, 64, pred_iou_thresh=0.0, stability_thresh=0.0)
    identity = {"backend": "sam", "parameters": {"points_per_side": 4}}
    writer = BankWriter.open(tmp_path / "bank", identity)
    each = []
    for t in tasks:
        entry = segment_one(segmenter, t)
        each.append(entry.mask_counts)
        writer.add(entry)
    m = json.loads((tmp_path / "bank" / "bank.json").read_text())["counts"]["masks"]
    assert m["images"] == 2 and m["grid_prompts"] == 32
    for key in ("grid_masks", "grid_kept", "centre_kept"):
        assert m[key] == each[0][key] + each[1][key]
    for key in ("grid_dropped", "centre_dropped"):
        assert m[key] == {r: each[0][key][r] + each[1][key][r] for r in each[0][key]}
    assert m["grid_masks"] == m["grid_kept"] + sum(m["grid_dropped"].values())
    assert BankWriter.open(tmp_path / "bank", identity).counts["masks"] == m  # resumed: kept
    line = format_summary(RunSummary("sam", tmp_path / "bank", 2, 0, 2, writer.counts))
    assert f"masks before the gate: grid {m['grid_kept']} of {m['grid_masks']} passed on (32 prompts" in line
    page = write_qc(tmp_path / "bank", root).read_text()
    assert "Masks SAM dropped before the gate (2 images; grid: 32 point prompts" in page
    assert f"<th>grid</th><td>{m['grid_masks']}</td><td>{m['grid_kept']}</td>" in page
    classical = BankWriter.open(tmp_path / "classical", {"backend": "classical"})
    classical.add(segment_one(make_segmenter("classical"), tasks[0]))
    assert "masks" not in classical.counts
