"""The sprite quality gate: what may never become a composited sprite, on drawn images (no data needed)
and through `naturalize segment` as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from naturalize.bank import Bank
from naturalize.compose.params import ComposeParams
from naturalize.drawn import draw_image, image_rng
from naturalize.pngmeta import read_provenance
from naturalize.segment.cells import Cell, Segmentation
from naturalize.segment.classical import segment_classical
from naturalize.segment.gate import NUCLEATED_REASONS, REASONS, judge
from naturalize.testing.cli import run_cli


def _unfit_images() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "one_px": np.full((1, 1, 3), 200, np.uint8),
        "ten_px": rng.integers(0, 256, (10, 10, 3)).astype(np.uint8),
        "blank": np.full((360, 363, 3), (231, 214, 199), np.uint8),
        "black": np.zeros((360, 360, 3), np.uint8),
        "noise": rng.integers(0, 256, (360, 363, 3)).astype(np.uint8),
        "grain": np.clip(rng.normal(200, 12, (360, 363, 3)), 0, 255).astype(np.uint8),
    }


@pytest.mark.parametrize("label", ["PLT", "SNE"])
def test_blank_noise_and_tiny_images_give_no_sprite_and_no_plate(label: str, tmp_path: Path) -> None:
    tree = tmp_path / "tree" / label
    tree.mkdir(parents=True)
    for name, rgb in _unfit_images().items():
        Image.fromarray(rgb).save(tree / f"{name}.png")
    out = tmp_path / "bank"
    proc = run_cli(
        "naturalize", "segment", tree.parent, "--out", out, "--backend", "classical", "--workers", 1, "--no-progress"
    )
    assert proc.returncode == 0, proc.stderr
    bank = Bank.open(out)
    assert len(bank.curation) == 6
    assert all(bank.select(k) == [] for k in ("RBC", "WBC", "PLT"))
    assert bank.backgrounds == [] and not list((out / "backgrounds").glob("*.png"))
    for row in bank.curation:  # each image says why it gave nothing and is kept out of the records
        assert row["keep"] == "0" and {"tiny_image", "blank_image", "noise_image"} & set(row["flags"].split(";"))
    counts = json.loads((out / "bank.json").read_text())["counts"]
    assert counts["usable"] == {"RBC": 0, "WBC": 0, "PLT": 0} and counts["backgrounds"] == 0


@pytest.mark.parametrize("cls", ["ERB", "LY", "SNE"])
def test_a_nucleated_cell_is_never_a_red_cell_or_platelet(cls: str) -> None:
    rgb = draw_image(cls, image_rng(0, cls, 0))
    seg = segment_classical(rgb)
    wbc = seg.of_kind("WBC")[0]
    rest = [c for c in seg.cells if c is not wbc]
    for kind in ("RBC", "PLT"):  # a backend that got the kind wrong and called the cell usable
        wrong = Cell(kind, wbc.mask, 0.95, False, True)
        verdict = judge(rgb, Segmentation([wrong, *rest], seg.background), "PLT")[0]
        assert verdict.reason == "nucleated" and verdict.quality == 0.0


def test_an_image_without_a_white_cell_gives_nothing_unless_a_platelet_image() -> None:
    rgb = draw_image("SNE", image_rng(0, "SNE", 1))
    seg = segment_classical(rgb)
    missed = Segmentation([c for c in seg.cells if c.kind != "WBC"], seg.background)
    assert {v.reason for v in judge(rgb, missed, "SNE")} == {"no_wbc_image"}
    as_plt = judge(rgb, missed, "PLT")
    assert "ok" in {v.reason for v in as_plt} and "no_wbc_image" not in {v.reason for v in as_plt}


def test_verdicts_of_a_drawn_smear() -> None:
    rgb = draw_image("MO", image_rng(0, "MO", 0))
    seg = segment_classical(rgb)
    verdicts = judge(rgb, seg, "MO")
    assert len(verdicts) == len(seg.cells) and all(v.reason in REASONS and 0 <= v.quality <= 1 for v in verdicts)
    for c, v in zip(seg.cells, verdicts):
        assert (v.reason == "ok") == c.usable  # a clean smear: the gate passes exactly the usable cells
        if c.touches_border:
            assert v.reason == "border"
    # two white cells: their class is unknown, neither is composited
    twice = Segmentation([*seg.cells, *seg.of_kind("WBC")], seg.background)
    assert {v.reason for c, v in zip(twice.cells, judge(rgb, twice, "MO")) if c.kind == "WBC"} == {"multi_wbc"}
    assert {v.reason for c, v in zip(seg.cells, judge(rgb, seg, "PLT")) if c.kind == "WBC"} == {"unlabelled"}


def test_a_bitten_or_lumpy_white_cell_is_refused_for_its_shape() -> None:
    rgb = draw_image("PMY", image_rng(0, "PMY", 0))
    seg = segment_classical(rgb)
    wbc = seg.of_kind("WBC")[0]
    rest = [c for c in seg.cells if c is not wbc]
    whole = judge(rgb, seg, "PMY")[seg.cells.index(wbc)]
    assert whole.reason == "ok"
    x0, y0, x1, y1 = wbc.box
    bitten = wbc.mask.copy()  # a quarter of the cell lost, as a mask that missed pale cytoplasm
    bitten[(y0 + y1) // 2 : y1, (x0 + x1) // 2 : x1] = False
    lumpy = wbc.mask.copy()  # a neighbour's piece on a thin bridge
    lumpy[(y0 + y1) // 2 - 2 : (y0 + y1) // 2 + 2, x1 : x1 + 25] = True
    lumpy[(y0 + y1) // 2 - 12 : (y0 + y1) // 2 + 12, x1 + 25 : x1 + 49] = True
    for mask in (bitten, lumpy):
        verdict = judge(rgb, Segmentation([*rest, Cell("WBC", mask, wbc.score, False, True)], seg.background), "PMY")
        assert verdict[-1].reason == "shape" and verdict[-1].quality < whole.quality


def test_compose_uses_only_sprites_that_passed_and_the_qc_page_shows_the_rest(tmp_path: Path) -> None:
    from naturalize.compose.run import compose_class
    from naturalize.drawn import write_drawn_release
    from naturalize.segment.run import segment

    tree = write_drawn_release(tmp_path / "drawn", {"MO": 4, "PLT": 2}, classes=("MO", "PLT"), progress=False)
    bank = tmp_path / "bank"
    summary = segment(tree, bank, backend="classical", workers=1, progress=False, echo=lambda m: None)
    b = Bank.open(bank)
    rejected = {s.sprite_id for s in b.sprites if s.reason != "ok"}
    assert rejected and any(s.reason == "ok" for s in b.sprites)
    # paper: every placed cell is pasted from the bank, so none may be one the gate rejected
    compose_class(b, "MO", 12, tmp_path / "syn", workers=1, progress=False, params=ComposeParams(scene="paper"))
    used = [json.loads(line) for line in (tmp_path / "syn" / "manifest.jsonl").read_text().splitlines()]
    ids = {c["sprite_id"] for rec in used for c in rec["cells"]}
    assert ids and not ids & rejected
    # transplant: the pasted white cell passed, and no donor scene holds a cell the gate found nucleated
    compose_class(b, "MO", 12, tmp_path / "tr", workers=1, progress=False)
    used = [json.loads(line) for line in (tmp_path / "tr" / "manifest.jsonl").read_text().splitlines()]
    pasted = {c["sprite_id"] for rec in used for c in rec["cells"] if c["centre"]}
    donors = {c["source"] for rec in used for c in rec["cells"] if not c["centre"]}
    assert pasted and not pasted & rejected
    assert not {s.source for s in b.sprites if s.reason in NUCLEATED_REASONS} & donors
    # the QC page: two PNG sheets and the counts, beside the bank's files
    assert summary.qc == bank / "qc" / "index.html"
    page = summary.qc.read_text()
    assert "sprites.png" in page and "sources.png" in page and "<td>" in page
    for name in ("sprites.png", "sources.png"):
        with Image.open(bank / "qc" / name) as im:
            assert im.format == "PNG" and im.width >= 300 and im.height >= 100
    # each sheet says what it shows (it recorded nothing): sprite ids of the bank, sources relative to the PBC root
    shown = read_provenance(bank / "qc" / "sprites.png")
    assert shown is not None and shown["made_by"].startswith("naturalize segment")
    ids = [i for row in shown["sprite_ids"].values() for i in row]
    assert ids and set(ids) <= {s.sprite_id for s in b.sprites} and rejected & set(ids)
    sources = read_provenance(bank / "qc" / "sources.png")
    assert sources is not None and sources["sources"]
    assert set(sources["sources"]) <= {r["source"] for r in b.curation}


def test_a_bank_written_before_the_gate_reads_as_passed(tmp_path: Path) -> None:
    from naturalize.bank import FORMAT_VERSION

    (tmp_path / "bank.json").write_text(json.dumps({"format_version": FORMAT_VERSION}))
    (tmp_path / "index.csv").write_text(
        "sprite_id,kind,label,source,x0,y0,x1,y1,area,score,touches_border\na_RBC_0,RBC,,a.jpg,0,0,5,5,20,0.9,0\n"
    )
    (tmp_path / "curation.csv").write_text("source,label,n_wbc,n_rbc,n_plt,flags,keep\na.jpg,SNE,1,1,0,,1\n")
    (tmp_path / "backgrounds.csv").write_text("background_id,source,label,width,height\n")
    rows = Bank.open(tmp_path).select("RBC")
    assert [(r.sprite_id, r.reason, r.quality) for r in rows] == [("a_RBC_0", "ok", 1.0)]


def test_a_grey_image_lends_no_plate_and_no_cell_to_a_stained_composite(sample_release: Path, tmp_path: Path) -> None:
    """A grayscale JPEG among stained crops stays in the dataset (keep=1) but gives the compositor nothing: before,
    its plate and red cells reached paper and matched composites (grey cells beside a stained white cell)."""
    tree = tmp_path / "tree"
    picks = {"PLT": ("platelet", "PLATELET_", 5), "PMY": ("ig", "PMY_", 4)}
    for cls, (folder, prefix, n) in picks.items():
        (tree / cls).mkdir(parents=True)
        for k, src in enumerate(sorted((sample_release / folder).glob(f"{prefix}*.jpg"))[:n]):
            with Image.open(src) as im:  # the first three platelet images as grayscale JPEGs
                (im.convert("L") if cls == "PLT" and k < 3 else im).save(tree / cls / src.name, quality=95)
    grey = {f"PLT/{p.name}" for p in sorted((tree / "PLT").iterdir())[:3]}
    bank = tmp_path / "bank"
    args = ("--backend", "classical", "--workers", 1, "--no-progress")
    proc = run_cli("naturalize", "segment", tree, "--out", bank, *args)
    assert proc.returncode == 0, proc.stderr
    b = Bank.open(bank)
    rows = {r["source"]: r for r in b.curation}
    assert all("grey_image" in rows[g]["flags"].split(";") and rows[g]["keep"] == "1" for g in grey)
    assert not grey & {r.source for r in b.backgrounds}
    assert not grey & {s.source for kind in ("RBC", "WBC", "PLT") for s in b.select(kind)}
    assert any(s.reason == "grey_image" and s.source in grey for s in b.sprites)
    for scene in ("paper", "matched"):
        out = tmp_path / scene
        proc = run_cli("naturalize", "compose", "--class", "PMY", "--n", 12, "--bank", bank, "--out", out,
                       "--scene", scene, "--workers", 1, "--no-progress")  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        used = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
        sources = {rec["background"]["source"] for rec in used} | {c["source"] for rec in used for c in rec["cells"]}
        assert sources and not sources & grey, scene
