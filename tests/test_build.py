"""`naturalize build`: recipes, protocols, and the no-leak guarantee of the clean protocol on real data."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from naturalize.audit import audit_dataset, format_audit
from naturalize.build import RECIPES, build, resolve_recipe
from naturalize.classes import RELEASE_COUNTS
from naturalize.fsio import UserError
from naturalize.outputs import MARKER
from naturalize.records import read_records


def test_recipes_follow_the_paper():
    assert RECIPES["pbc11"].synthetic_counts(RELEASE_COUNTS) == {}
    assert RECIPES["419-pmy"].synthetic_counts(RELEASE_COUNTS) == {"PMY": 419}
    assert RECIPES["1k-pbc"].synthetic_counts(RELEASE_COUNTS) == {
        "BNE": 1000,
        "MMY": 1000,
        "MY": 1000,
        "PMY": 1419,
        "SNE": 1000,
    }
    assert RECIPES["2k-pbc"].synthetic_counts(RELEASE_COUNTS)["PMY"] == 2419
    # 1k-class-pbc composes only the paper's five white-cell classes (section 3.3: SAM on RBC, BNE, MMY, MY, PMY,
    # SNE only), each to the largest class's count (EO: 3,117); BA, EO, ERB, LY, MO and PLT stay real only
    balanced = RECIPES["1k-class-pbc"].synthetic_counts(RELEASE_COUNTS)
    assert set(balanced) == {"BNE", "MMY", "MY", "PMY", "SNE"}
    assert all(RELEASE_COUNTS[c] + n == 3117 for c, n in balanced.items())
    custom = resolve_recipe("custom", ("PMY", "MY"), 50)
    assert custom.synthetic_counts(RELEASE_COUNTS) == {"MY": 50, "PMY": 50}
    with pytest.raises(UserError, match="unknown recipe"):
        resolve_recipe("3k-pbc")
    with pytest.raises(UserError, match="--classes and --per-class"):
        resolve_recipe("custom")


def test_per_class_replaces_the_recipes_counts_and_the_description_says_so():
    """--per-class N gives every class a recipe augments N synthetic images, its PMY top-up class included (a top-up
    to the paper's 1,011 PMY made 1,021 PMY beside 20 of each other class from 10 real images); the description
    states the counts used, not the paper's 2,000."""
    real = {c: 10 for c in RELEASE_COUNTS}
    two_k = resolve_recipe("2k-pbc", per_class=20)
    assert two_k.synthetic_counts(real) == {c: 20 for c in ("BNE", "MMY", "MY", "PMY", "SNE")}
    assert "20 synthetic images each for BNE, MMY, MY, PMY, SNE" in two_k.description
    assert "2,000" not in two_k.description and "1,011" not in two_k.description
    assert resolve_recipe("419-pmy", per_class=5).synthetic_counts(real) == {"PMY": 5}
    assert resolve_recipe("2k-pbc", ("MY",), 7).synthetic_counts(real) == {"MY": 7}
    kept = resolve_recipe("2k-pbc", ("MY",))  # --classes alone keeps the top-up and the count
    assert kept.synthetic_counts(real) == {"MY": 2000, "PMY": 1001}
    assert "PMY topped up to 1,011" in kept.description and "2,000 synthetic images each for MY" in kept.description
    assert "100 images" in resolve_recipe("1k-class-pbc", per_class=100).description
    assert resolve_recipe("2k-pbc") == RECIPES["2k-pbc"]  # without options: the paper's recipe and words
    assert resolve_recipe("custom", ("PMY", "MY"), 50).description == "curated, 50 synthetic images each for PMY, MY"


def test_a_recipe_that_segments_nothing_resolves_no_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """pbc11 (no curation, no synthetic images) neither announces a backend nor asks --backend sam for a
    checkpoint; it notes that --backend is not used."""
    from naturalize.drawn import write_drawn_release

    monkeypatch.delenv("NATURALIZE_SAM_CHECKPOINT", raising=False)
    write_drawn_release(tmp_path / "pbc", 3, seed=0, progress=False)
    for backend in ("auto", "sam"):
        said: list[str] = []
        meta = build("pbc11", tmp_path / "pbc", tmp_path / backend, backend=backend, progress=False, echo=said.append)
        assert sum(meta["real_counts"].values()) == 33
        assert not any(s.startswith("backend ") for s in said), said
        assert [s[:5] for s in said if s.startswith("[")] == ["[1/2]", "[2/2]"]
        assert any("--backend is not used" in s for s in said) == (backend == "sam"), said


def _files(out: Path) -> list[dict]:
    with (out / "files.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _build_pmy(root: Path, out: Path, per_class: int, **more) -> dict:
    """A custom dataset with `per_class` synthetic PMY images from at most 12 real images per class (classical
    backend, one worker, quiet unless `more` gives an echo)."""
    more = {"echo": lambda s: None, **more}
    return build(
        "custom",
        root,
        out,
        classes=("PMY",),
        per_class=per_class,
        per_class_cap=12,
        backend="classical",
        workers=1,
        progress=False,
        **more,
    )


@pytest.mark.slow
def test_clean_build_on_sample_never_leaks_test_images(sample_root: Path, tmp_path: Path):
    out = tmp_path / "datasets" / "custom"
    meta = _build_pmy(sample_root, out, 6)
    rows = _files(out)
    prepared = Path(meta["work"]) / "prepared"
    split_of = {r.path: r.split for r in read_records(prepared / "records.csv")}
    # val and test are real only, and each real file sits in its own split
    assert {r["origin"] for r in rows if r["split"] != "train"} == {"real"}
    assert all(split_of[r["source"]] == r["split"] for r in rows if r["origin"] == "real")
    synthetic = [r for r in rows if r["origin"] == "synthetic"]
    assert len(synthetic) == 6 and {r["split"] for r in synthetic} == {"train"}
    # every sprite and background of every synthetic image comes from a training image
    manifest = [json.loads(line) for line in (out / "synthetic" / "manifest.jsonl").read_text().splitlines()]
    sources = {s["source"] for m in manifest for s in m["cells"]} | {m["background"]["source"] for m in manifest}
    assert sources and {split_of[s] for s in sources} == {"train"}
    # the tree on disk matches files.csv and dataset.json
    on_disk = sorted(
        p.relative_to(out).as_posix() for p in out.glob("*/*/*") if p.parts[-3] in ("train", "val", "test")
    )
    assert on_disk == sorted(r["file"] for r in rows)
    assert meta["counts"]["train"]["PMY"]["synthetic"] == 6
    assert json.loads((out / "dataset.json").read_text())["protocol"] == "clean"
    # curated-out (multi-WBC) images are in no split
    excluded = {r.path for r in read_records(out / "records.csv") if r.excluded}
    assert not excluded & {r["source"] for r in rows}
    assert not any(r.excluded for r in read_records(prepared / "records.csv"))  # build's input is never rewritten
    audit = audit_dataset(out)  # the same, from the dataset's own files: every cell and plate of every composite
    assert audit.ok and audit.counts["sources traced"] > 6 * 10, format_audit(audit)
    # a rerun with other parameters refuses; the same parameters rebuild in place
    with pytest.raises(UserError, match="--overwrite"):
        _build_pmy(sample_root, out, 7)


@pytest.mark.slow
def test_1k_class_pbc_on_the_sample_composes_only_the_papers_five_classes(sample_root: Path, tmp_path: Path):
    """The paper segmented, and so composed, only BNE, MMY, MY, PMY and SNE (Algorithms 16(12):562, section 3.3);
    1k-class-pbc brings those five to the target and adds nothing to BA, EO, ERB, LY, MO or PLT (it composed
    platelet, lymphocyte... images the paper never made)."""
    meta = build(
        "1k-class-pbc",
        sample_root,
        tmp_path / "ds",
        per_class=6,
        per_class_cap=4,
        backend="classical",
        workers=1,
        progress=False,
        echo=lambda s: None,
    )
    splits = ("train", "val", "test")
    synthetic = {c: sum(meta["counts"][s][c]["synthetic"] for s in splits) for c in meta["real_counts"]}
    five = ("BNE", "MMY", "MY", "PMY", "SNE")
    assert {c for c, n in synthetic.items() if n} == set(five), synthetic
    assert all(meta["real_counts"][c] + synthetic[c] == 6 for c in five), (meta["real_counts"], synthetic)


@pytest.mark.slow
def test_paper_protocol_pools_and_warns(sample_root: Path, tmp_path: Path):
    said: list[str] = []
    meta = _build_pmy(sample_root, tmp_path / "paper", 20, protocol="paper", echo=said.append)
    assert any("optimistic" in s for s in said)
    assert not any("--split" in s for s in said), said  # segment's note names its own option; build splits itself
    pmy = {s: meta["counts"][s]["PMY"] for s in ("train", "val", "test")}
    assert sum(v["synthetic"] for v in pmy.values()) == 20
    assert pmy["val"]["synthetic"] + pmy["test"]["synthetic"] > 0  # the paper's leak, reproduced on purpose
    assert meta["sprite_sources"] == "all images"
    # the dataset's records.csv says where each real image is (the pooled split moves some from prepare's split)
    split_of = {r.path: r.split for r in read_records(tmp_path / "paper" / "records.csv")}
    real = [r for r in _files(tmp_path / "paper") if r["origin"] == "real"]
    assert real and all(split_of[r["source"]] == r["split"] for r in real)


@pytest.mark.slow
def test_platelet_composites_use_the_paper_scene_in_a_transplant_build(sample_root: Path, tmp_path: Path):
    """Transplant replaces a real image's white cell; PBC platelet images hold none, so build composes PLT with
    the paper scene (a platelet in a white cell's inpainted hole showed the smudge), says so and records it."""
    said: list[str] = []
    out = tmp_path / "plt"
    meta = build(
        "custom",
        sample_root,
        out,
        classes=("PLT", "PMY"),
        per_class=3,
        per_class_cap=12,
        backend="classical",
        workers=1,
        progress=False,
        echo=said.append,
    )
    assert meta["scene_by_class"] == {"PLT": "paper", "PMY": "transplant"}
    assert any(s.startswith("note: PLT composites use the paper scene") for s in said)
    manifest = [json.loads(line) for line in (out / "synthetic" / "manifest.jsonl").read_text().splitlines()]
    assert {(m["class"], m["scene"]) for m in manifest} == {("PLT", "paper"), ("PMY", "transplant")}
    for m in manifest:
        if m["class"] == "PLT":  # a platelet at the centre, on a cell-free plate
            assert [c["kind"] for c in m["cells"] if c["centre"]] == ["PLT"] and "removed" not in m["background"]


def test_a_bad_pbc_folder_leaves_no_folder_and_claims_no_cache(tmp_path: Path) -> None:
    """An empty --pbc (no PBC layout) or class folders without images: one error line, and no dataset or work
    folder left behind (they used to stay, holding only the marker, after 'cached in <a folder never made>');
    a folder that existed before the run stays."""
    from naturalize.outputs import MARKER
    from naturalize.testing.cli import run_cli

    (tmp_path / "empty").mkdir()
    (tmp_path / "classes" / "PMY").mkdir(parents=True)
    (tmp_path / "mine").mkdir()
    for pbc, out, expect in [
        ("empty", "ds/x", "has no PBC layout"),
        ("classes", "ds/x", "no labelled PBC images"),
        ("classes", "mine", "no labelled PBC images"),
    ]:
        r = run_cli("naturalize", "build", "1k-pbc", "--pbc", tmp_path / pbc, "--out", tmp_path / out)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.strip().splitlines()[-1].startswith("error:") and expect in r.stderr, r.stderr
        assert "cached in" not in r.stdout, r.stdout
        assert sorted(p.name for p in tmp_path.iterdir()) == ["classes", "empty", "mine"]
        assert {p.name for p in (tmp_path / "mine").iterdir()} <= {MARKER}  # the user's folder is not removed


def test_a_cached_bank_of_another_version_names_the_fix_that_works(tmp_path: Path) -> None:
    """A work cache left by another Naturalize version (other gate settings) stopped the build with 'pass
    --overwrite to replace it'; build's --overwrite replaces the dataset, never the cache, so the user lost the
    dataset and got the same line again. The line now names the fixes that work, and deleting the bank does."""
    from naturalize.drawn import write_drawn_release
    from naturalize.testing.cli import run_cli

    write_drawn_release(tmp_path / "pbc", 3, seed=0, progress=False)
    args = ("build", "pbc11-curated", "--pbc", tmp_path / "pbc", "--out", tmp_path / "ds" / "c", "--workers", 1)
    assert run_cli("naturalize", *args, "--no-progress").returncode == 0
    (bank_json,) = (tmp_path / "ds" / ".work").glob("*/bank-train/bank.json")
    meta = json.loads(bank_json.read_text())
    meta["parameters"]["gate"].pop("min_chroma")  # as an older version wrote it
    bank_json.write_text(json.dumps(meta))
    for more in ((), ("--overwrite",)):
        r = run_cli("naturalize", *args, "--no-progress", *more)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        line = r.stderr.strip().splitlines()[-1]
        assert line.startswith(f"error: {bank_json.parent} holds a sprite bank made with other settings"), line
        assert "delete that folder" in line and "--work DIR" in line and "pass --overwrite" not in line, line
        # refused before anything is removed: the dataset built before is still whole (--overwrite removed it)
        assert (tmp_path / "ds" / "c" / "dataset.json").is_file() and (tmp_path / "ds" / "c" / "files.csv").is_file()
    shutil.rmtree(bank_json.parent)
    assert run_cli("naturalize", *args, "--no-progress", "--overwrite").returncode == 0


def test_a_moved_pbc_tree_and_dataset_rebuild_with_overwrite(tmp_path: Path) -> None:
    """A PBC tree and its dataset copied elsewhere (`cp -a`) and built again there: the dataset names the old PBC
    folder, so a plain rerun is refused naming that setting (pbc_root); --overwrite rebuilds it from the new place
    (its own work cache: the old one's banks read their images from the old folder)."""
    from naturalize.drawn import write_drawn_release
    from naturalize.testing.cli import run_cli

    old, new = tmp_path / "a", tmp_path / "b"
    write_drawn_release(old / "pbc", 3, seed=0, progress=False)

    def args(root: Path) -> tuple:
        return ("build", "custom", "--pbc", root / "pbc", "--out", root / "ds", "--classes", "PMY", "--per-class", 4)

    assert run_cli("naturalize", *args(old), "--workers", 1, "--no-progress").returncode == 0
    shutil.copytree(old, new, symlinks=True)
    r = run_cli("naturalize", *args(new), "--workers", 1, "--no-progress")
    assert r.returncode == 2 and "other settings (pbc_root)" in r.stderr.strip().splitlines()[-1], r.stderr
    r = run_cli("naturalize", *args(new), "--workers", 1, "--no-progress", "--overwrite")
    assert r.returncode == 0, r.stderr
    made = json.loads((new / "ds" / "dataset.json").read_text())
    assert str(new / "pbc") in json.dumps(made) and str(old / "pbc") not in json.dumps(made)


def test_a_rebuild_clears_the_half_written_files_a_killed_build_left(tmp_path: Path) -> None:
    """A build killed while writing files.csv, records.csv, dataset.json or its marker left the temp file
    (`.files.csv.XXXXXXXX.tmp`, ...) in the dataset folder for good: the rerun finished the build beside it. The
    rerun now removes them, and the folder is that of an uninterrupted build; a file of the user's that only looks
    alike (another name) stays."""
    from naturalize.drawn import write_drawn_release
    from naturalize.testing.cli import run_cli

    write_drawn_release(tmp_path / "pbc", 3, seed=0, progress=False)
    out = tmp_path / "ds" / "c"
    args = ("build", "custom", "--pbc", tmp_path / "pbc", "--out", out, "--classes", "PMY", "--per-class", 4)
    assert run_cli("naturalize", *args, "--workers", 1, "--no-progress").returncode == 0
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file() and "journal" not in p.parts}
    left = [out / f".{name}.k3_x9q2z.tmp" for name in ("files.csv", "records.csv", "dataset.json", MARKER)]
    for p in left:
        p.write_bytes(b"half")
    mine = out / ".files.csv.mine.tmp"
    mine.write_bytes(b"mine")
    assert run_cli("naturalize", *args, "--workers", 1, "--no-progress").returncode == 0
    assert not any(p.exists() for p in left) and mine.read_bytes() == b"mine"
    mine.unlink()
    after = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file() and "journal" not in p.parts}
    assert after == before


def test_a_recipe_composing_a_class_the_tree_lacks_stops_before_segmenting(tmp_path: Path) -> None:
    """2k-pbc on a PBC tree without BNE, MMY, MY or SNE images segmented every image, then stopped with a line
    telling the user to `naturalize segment` BNE images into the work cache's bank. It now stops before
    segmenting, naming the classes it lacks and the fix; nothing is segmented."""
    from naturalize.drawn import write_drawn_release
    from naturalize.testing.cli import run_cli

    write_drawn_release(tmp_path / "pbc", 3, seed=0, classes=("LY", "PMY"), progress=False)
    r = run_cli("naturalize", "build", "2k-pbc", "--pbc", tmp_path / "pbc", "--out", tmp_path / "ds" / "2k")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("error: 2k-pbc composes BNE, MMY, MY, SNE images, but ") and str(tmp_path / "pbc") in line
    assert "--classes LY,PMY" in line, line
    assert "segment" not in r.stdout and not list((tmp_path / "ds").glob(".work/*/bank-*"))
    assert not (tmp_path / "ds" / "2k").exists()


def test_a_shared_work_folder_of_another_seed_split_or_cap_is_refused(tmp_path: Path) -> None:
    """`--work DIR` names the cache itself, so its key (PBC folder, seed, split, --max-real) no longer sets it apart:
    a build with another seed reused the records prepared for the first, so its dataset.json said seed 1 and split
    0.6/0.2/0.2 while its tree held seed 0's 80/10/10 split. Such a build now stops naming the settings that
    differ; the same settings reuse the cache."""
    from naturalize.drawn import write_drawn_release

    write_drawn_release(tmp_path / "pbc", 10, seed=0, progress=False)
    work = tmp_path / "W"
    first = build("pbc11", tmp_path / "pbc", tmp_path / "a", work=work, progress=False, echo=lambda s: None)
    again = build("pbc11", tmp_path / "pbc", tmp_path / "a2", work=work, progress=False, echo=lambda s: None)
    assert again["counts"] == first["counts"]
    for more, named in (
        ({"seed": 1}, "seed"),
        ({"fractions": (0.6, 0.2, 0.2)}, "split"),
        ({"per_class_cap": 5}, "--max-real"),
    ):
        with pytest.raises(UserError, match=f"other settings \\(.*{named}.*\\).*--work") as e:
            build("pbc11", tmp_path / "pbc", tmp_path / "b", work=work, progress=False, echo=lambda s: None, **more)
        assert str(work) in str(e.value) and not (tmp_path / "b").exists()


def test_dataset_json_names_its_work_cache_so_a_consumer_elsewhere_finds_each_sprite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--work work --out ds` given relative: dataset.json said "work": "work" (relative to wherever the build ran),
    so a consumer following a composite's cells to their sprites from another folder found no bank. It names the
    cache (and the dataset) absolute, as it does the PBC folder: from anywhere, WORK/bank-train holds every sprite
    the manifest names and PBC_ROOT/source every source image."""
    from naturalize.bank import Bank
    from naturalize.drawn import write_drawn_release

    write_drawn_release(tmp_path / "pbc", 3, seed=0, progress=False)
    (tmp_path / "run").mkdir()
    monkeypatch.chdir(tmp_path / "run")
    build("custom", "../pbc", "ds", classes=("PMY",), per_class=3, work="work", workers=1, progress=False, echo=str)
    monkeypatch.chdir(tmp_path)  # the consumer
    meta = json.loads((tmp_path / "run" / "ds" / "dataset.json").read_text())
    assert Path(meta["work"]) == tmp_path / "run" / "work" and Path(meta["out"]) == tmp_path / "run" / "ds"
    bank = Bank.open(Path(meta["work"]) / "bank-train")
    ids = {r.sprite_id: r.source for r in bank.sprites}
    lines = (Path(meta["out"]) / "synthetic" / "manifest.jsonl").read_text().splitlines()
    cells = [c for line in lines for c in json.loads(line)["cells"]]
    assert len(lines) == 3 and cells and all(ids[c["sprite_id"]] == c["source"] for c in cells)
    assert all((Path(meta["parameters"]["pbc_root"]) / c["source"]).is_file() for c in cells)
