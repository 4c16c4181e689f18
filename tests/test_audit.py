"""`naturalize audit`: a built dataset's protocol checked from its own files (no leak under clean, leaks
counted under paper), and each kind of leak found when a dataset is altered to hold it."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from naturalize.audit import audit_dataset, format_audit
from naturalize.build import build
from naturalize.testing.cli import run_cli


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "files.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _write_rows(out: Path, rows: list[dict[str, str]]) -> None:
    with (out / "files.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, ["split", "class", "file", "origin", "source"], lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


@pytest.fixture(scope="module")
def drawn_clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean custom dataset (4 transplant PMY and 4 paper-scene PLT composites) built from a drawn release."""
    from naturalize.drawn import write_drawn_release

    root = tmp_path_factory.mktemp("audit")
    write_drawn_release(root / "pbc", 4, seed=0, progress=False)
    build(
        "custom",
        root / "pbc",
        root / "ds" / "clean",
        classes=("PLT", "PMY"),
        per_class=4,
        backend="classical",
        workers=1,
        progress=False,
        echo=lambda s: None,
    )
    return root / "ds" / "clean"


@pytest.fixture()
def altered(drawn_clean: Path, tmp_path: Path) -> Path:
    """A copy of the clean dataset to alter (hard links become copies: the original stays as built)."""
    out = tmp_path / "clean"
    shutil.copytree(drawn_clean, out)
    return out


def test_a_clean_build_passes_with_every_source_traced(drawn_clean: Path) -> None:
    audit = audit_dataset(drawn_clean)
    assert audit.ok, format_audit(audit)
    assert audit.counts["synthetic images"] == 8 and audit.counts["sources traced"] > 8
    assert audit.counts["files hashed"] == len(_rows(drawn_clean))
    assert "no leak found" in format_audit(audit)


def test_a_synthetic_image_moved_into_test_is_found(altered: Path) -> None:
    rows = _rows(altered)
    row = next(r for r in rows if r["origin"] == "synthetic")
    dst = f"test/{row['class']}/{Path(row['file']).name}"
    (altered / row["file"]).rename(altered / dst)
    row.update(split="test", file=dst)
    _write_rows(altered, rows)
    problems = audit_dataset(altered).problems
    assert any("a synthetic image in test/" in p for p in problems), problems


def test_a_composite_made_from_a_test_image_is_found(altered: Path) -> None:
    """The manifest names a test image as the source of one cell: the audit names the image and the role."""
    test_image = next(r["source"] for r in _rows(altered) if r["split"] == "test")
    manifest = altered / "synthetic" / "manifest.jsonl"
    lines = [json.loads(t) for t in manifest.read_text().splitlines()]
    lines[0]["cells"][-1]["source"] = test_image
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    problems = audit_dataset(altered).problems
    assert problems == [
        f"{altered / 'train' / lines[0]['file']}: its cell:{lines[0]['cells'][-1]['kind']} comes "
        f"from {test_image}, a test image"
    ], problems


def test_a_copy_of_a_test_image_in_train_is_found(altered: Path) -> None:
    """A real test image copied into train under another name (as a second download or a merged tree would put
    it): the bytes in two splits are found from the files themselves."""
    rows = _rows(altered)
    test = next(r for r in rows if r["split"] == "test")
    train = next(r for r in rows if r["split"] == "train" and r["origin"] == "real")
    shutil.copyfile(altered / test["file"], altered / train["file"])
    problems = audit_dataset(altered).problems
    assert any("same bytes" in p and test["file"] in p and train["file"] in p for p in problems), problems
    assert any("are not those of" in p for p in problems), problems
    assert not audit_dataset(altered, hashes=False).problems  # without hashing, files.csv alone looks right


def test_a_re_saved_copy_of_a_test_image_in_train_is_found(altered: Path) -> None:
    """The same picture in other bytes (a test image re-saved as a JPEG of another quality) in train."""
    from PIL import Image

    rows = _rows(altered)
    test = next(r for r in rows if r["split"] == "test")
    train = next(r for r in rows if r["split"] == "train" and r["origin"] == "real")
    Image.open(altered / test["file"]).save(altered / train["file"], quality=70)
    problems = audit_dataset(altered).problems
    assert f"the same picture in other bytes (a re-saved copy) sits in two splits: {train['file']}, {test['file']}" in (
        problems
    ) or f"the same picture in other bytes (a re-saved copy) sits in two splits: {test['file']}, {train['file']}" in (
        problems
    ), problems


def test_a_file_the_build_did_not_place_is_found(altered: Path) -> None:
    (altered / "val" / "PMY" / "stray.jpg").write_bytes(b"x")
    problems = audit_dataset(altered).problems
    assert any("stray.jpg: in the tree but not in files.csv" in p for p in problems), problems


def test_the_command_exits_1_on_a_problem_and_2_on_a_folder_that_is_no_dataset(
    drawn_clean: Path, altered: Path, tmp_path: Path
) -> None:
    ok = run_cli("naturalize", "audit", drawn_clean)
    assert ok.returncode == 0 and "(clean protocol): no leak found" in ok.stdout, ok.stdout + ok.stderr
    (altered / "val" / "PMY" / "stray.jpg").write_bytes(b"x")
    bad = run_cli("naturalize", "audit", drawn_clean, altered)
    assert bad.returncode == 1 and "1 problem(s)" in bad.stdout and "stray.jpg" in bad.stdout, bad.stdout
    none = run_cli("naturalize", "audit", tmp_path / "nothing")
    assert none.returncode == 2 and none.stderr.strip().splitlines()[-1].startswith("error: "), none.stderr
    (altered / "synthetic" / "manifest.jsonl").write_text("{not json\n")
    damaged = run_cli("naturalize", "audit", altered)
    last = damaged.stderr.strip().splitlines()[-1]
    assert damaged.returncode == 2 and last.startswith("error: ") and "manifest.jsonl is damaged" in last, (
        damaged.stderr
    )
    (altered / "files.csv").write_text("split,file\n")
    damaged = run_cli("naturalize", "audit", altered)
    assert damaged.returncode == 2 and "lacks the column(s) class, origin, source" in damaged.stderr, damaged.stderr


def test_a_dataset_naming_an_unknown_protocol_is_one_error_line(altered: Path) -> None:
    """dataset.json's protocol picks the rules; one the registry lacks (edited by hand, or from a later version) used
    to be audited as the lenient paper protocol, exit 0. Now: one error line naming the file, exit 2."""
    meta = json.loads((altered / "dataset.json").read_text())
    (altered / "dataset.json").write_text(json.dumps({**meta, "protocol": "later"}))
    done = run_cli("naturalize", "audit", altered)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stdout + done.stderr
    assert done.stderr.startswith(f"error: {altered / 'dataset.json'} names protocol 'later', not one of clean, paper")


@pytest.mark.slow
def test_the_paper_protocol_on_real_images_counts_its_leaks(sample_root: Path, tmp_path: Path) -> None:
    """The paper protocol pools composites and their sources with the real images before the split: the audit finds
    no problem (it is that protocol) but counts the composites in val/test and those made from val/test images."""
    build(
        "custom",
        sample_root,
        tmp_path / "paper",
        protocol="paper",
        classes=("PMY",),
        per_class=40,
        per_class_cap=12,
        backend="classical",
        workers=1,
        progress=False,
        echo=lambda s: None,
    )
    audit = audit_dataset(tmp_path / "paper")
    assert audit.ok, format_audit(audit)
    assert audit.protocol == "paper" and audit.counts["synthetic images"] == 40
    held_out = audit.counts["synthetic images in val"] + audit.counts["synthetic images in test"]
    assert held_out > 0 and any("synthetic image(s) hold cells or a plate of test images" in n for n in audit.notes)
    assert any(n.endswith("in a training composite or in its training source image") for n in audit.notes)
    lent = [n for n in audit.notes if "real test image(s) lend their white cell" in n]
    assert len(lent) == 1 and not lent[0].startswith("0 of"), audit.notes
    assert "val/test are NOT real-only" in format_audit(audit) and "no leak" not in format_audit(audit)
