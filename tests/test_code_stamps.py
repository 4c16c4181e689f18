"""Every artefact a later run reuses records the code that made it; one made by other code is remade or refused
with one `error:` line, never reused. Each test makes the artefact with a real run, then edits its stored stamp as
another version of the code would have written it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from naturalize.codeversion import code_digest
from naturalize.drawn import write_drawn_release
from naturalize.testing.cli import run_cli

OTHER = "0" * 64  # a stamp no code makes


def _files(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def _restamp(path: Path, key: str, value: object = OTHER) -> None:
    meta = json.loads(path.read_text())
    assert key in meta, f"{path} records no {key!r}"
    meta[key] = value
    path.write_text(json.dumps(meta))


@pytest.fixture(scope="module")
def drawn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("drawn") / "pbc"
    write_drawn_release(root, 3, seed=0, progress=False)
    return root


def test_segment_does_not_resume_a_bank_cut_by_other_code(drawn: Path, tmp_path: Path) -> None:
    from naturalize.segment.run import SEGMENT_CODE

    args = ("segment", drawn, "--out", tmp_path / "bank", "--limit", 3, "--workers", 1, "--no-progress")
    assert run_cli("naturalize", *args).returncode == 0
    bank_json = tmp_path / "bank" / "bank.json"
    assert json.loads(bank_json.read_text())["code"] == code_digest(*SEGMENT_CODE)
    _restamp(bank_json, "code")
    before = _files(tmp_path / "bank")
    r = run_cli("naturalize", *args)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and "code (cut by another version" in line and "--overwrite" in line, line
    assert _files(tmp_path / "bank") == before  # refused before anything is touched
    assert run_cli("naturalize", *args, "--overwrite").returncode == 0
    assert json.loads(bank_json.read_text())["code"] == code_digest(*SEGMENT_CODE)


def test_build_does_not_reuse_a_cached_bank_cut_by_other_code(drawn: Path, tmp_path: Path) -> None:
    args = ("build", "pbc11-curated", "--pbc", drawn, "--out", tmp_path / "ds", "--workers", 1, "--no-progress")
    args += ("--work", tmp_path / "work")
    assert run_cli("naturalize", *args).returncode == 0
    (bank_json,) = (tmp_path / "work").rglob("bank-train/bank.json")
    _restamp(bank_json, "code")
    r = run_cli("naturalize", *args)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert f"{bank_json.parent} holds a sprite bank made with other settings (code (cut by" in line, line
    assert "delete that folder" in line, line
    shutil.rmtree(bank_json.parent)
    assert run_cli("naturalize", *args).returncode == 0


def test_preview_gives_the_same_bytes_for_a_relative_or_an_absolute_folder(drawn: Path, tmp_path: Path) -> None:
    """The contact sheet's provenance named its files as the folder was given: `preview imgs` and `preview
    /abs/imgs` (or the same from another directory) wrote different PNGs, and the absolute one carried the user's
    path. The files are now named relative to DIR (and --real)."""
    from PIL import Image

    sheets = []
    for cwd, root in ((drawn.parent, Path(drawn.name)), (tmp_path, drawn)):
        out = tmp_path / f"sheet{len(sheets)}.png"
        r = run_cli("naturalize", "preview", root, "--real", root / "ig", "--out", out, "--n", 6, cwd=cwd)
        assert r.returncode == 0, r.stderr
        sheets.append(out.read_bytes())
    assert sheets[0] == sheets[1]
    with Image.open(tmp_path / "sheet0.png") as im:
        prov = json.loads(im.text["provenance"])
    assert prov["real"] and all((drawn / "ig" / p).is_file() for p in prov["real"])
    assert prov["synthetic"] and all((drawn / p).is_file() for p in prov["synthetic"])


def test_the_same_model_saves_to_the_same_bytes(tmp_path: Path) -> None:
    """A run's model.keras (and report.json's `model_sha256`, which names it) differed between two runs of the same
    seed with the same weights: Keras stamps the save time and numbers shared objects by their Python id(). Two
    instances of one model, with the same weights, now save to the same bytes, and load back to the same model."""
    pytest.importorskip("keras")
    import keras
    import numpy as np

    from classify import runs
    from classify.models import create_model

    saved = []
    for k in range(2):
        keras.utils.set_random_seed(0)
        model = create_model("custom_cnn", 3, "none", "finetune", 32)
        runs.save_model(model, tmp_path / f"m{k}.keras")
        saved.append((tmp_path / f"m{k}.keras").read_bytes())
    assert saved[0] == saved[1]
    x = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3)).astype("float32")
    again = runs.load_model(tmp_path / "m0.keras")
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))


def test_matched_statistics_and_focus_measured_by_other_code_are_measured_again(tmp_path: Path) -> None:
    """BANK/scenes/matched/<CLASS>.json and BANK/scenes/focus.json were keyed by the bank's rows and a hand-kept
    version only: an edit of the code that measures them reused the old numbers. They now record `code` and are
    measured again when it differs."""
    from naturalize.bank import Bank
    from naturalize.compose.params import ComposeParams
    from naturalize.compose.run import compose_class
    from naturalize.compose.scene_stats import CODE, scene_stats, source_focus
    from naturalize.testing.drawnbank import make_drawn_bank

    bank = make_drawn_bank(tmp_path / "bank", {"PMY": 3})
    params = ComposeParams(scene="matched", wbc_focus=True)
    compose_class(bank, "PMY", 2, tmp_path / "out", params=params, workers=1, progress=False)
    stats, focus = bank / "scenes" / "matched" / "PMY.json", bank / "scenes" / "focus.json"
    measured = (scene_stats(Bank.open(bank), "PMY").n_rbc.tolist(), source_focus(Bank.open(bank)))
    for path, key, stale in ((stats, "n_rbc", [999] * len(measured[0])), (focus, "sigma", {"x": 99.0})):
        _restamp(path, "code")
        _restamp(path, key, stale)  # what that other code measured
    assert scene_stats(Bank.open(bank), "PMY").n_rbc.tolist() == measured[0]
    assert source_focus(Bank.open(bank)) == measured[1]
    assert json.loads(stats.read_text())["code"] == json.loads(focus.read_text())["code"] == code_digest(*CODE)


def test_the_decoded_image_cache_is_keyed_by_the_code_that_decoded_it(drawn: Path, tmp_path: Path) -> None:
    """classify's decoded-image cache was keyed by a hand-kept "v3", the size and the files: an edit of the decoder
    (or another Pillow) reused pixels decoded the old way. Its key now holds the decoding code's digest and
    Pillow's version: the file a real decode writes is named by them, and another stamp names another file."""
    pytest.importorskip("PIL")
    import PIL

    from classify.images import DECODE_CODE, _key, cache_stamp, cached_array

    paths = sorted(drawn.rglob("*.jpg"))[:3]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLASSIFY_CACHE", str(tmp_path / "cache"))
        cached_array(paths, 16, workers=1, progress=False)
    assert cache_stamp() == [code_digest(*DECODE_CODE), PIL.__version__]
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [f"{_key(paths, 16)}_16.npy"]
    assert _key(paths, 16, [OTHER, PIL.__version__]) != _key(paths, 16)


def test_a_decoded_image_cache_of_an_older_key_is_not_read(drawn: Path, tmp_path: Path) -> None:
    """The key held a hand-kept "v3" beside the code digest; the digest alone now says which code decoded the
    pixels. The arrays older code cached, under each key it wrote ("v3" and the size; "v3", a digest, Pillow's
    version, including this very code's digest), filled with zeros here, are never read: the images are decoded."""
    pytest.importorskip("PIL")
    import PIL

    from classify.images import DECODE_CODE, _key, cached_array, decode_all

    paths = sorted(drawn.rglob("*.jpg"))[:3]
    cache = tmp_path / "cache"
    cache.mkdir()
    for old in (["v2"], ["v3"], ["v3", code_digest(*DECODE_CODE), PIL.__version__]):
        np.save(cache / f"{_key(paths, 16, old)}_16.npy", np.zeros((3, 16, 16, 3), np.uint8))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLASSIFY_CACHE", str(cache))
        got = cached_array(paths, 16, workers=1, progress=False)
    assert got.any() and np.array_equal(got, decode_all(paths, 16, workers=1, progress=False))
    assert len(list(cache.iterdir())) == 4  # the old ones are left alone (a cache: the user may delete them)


def test_build_does_not_reuse_records_prepared_by_other_code(drawn: Path, tmp_path: Path) -> None:
    """build's work cache holds prepared records keyed by the PBC folder, seed, split and --max-real only: records
    made by another version of prepare (another split or de-duplication rule) were laid out silently. summary.json
    now records `code`; a build refuses records of another with one line, before anything is removed."""
    from naturalize.prepare import PREPARE_CODE

    args = ("build", "pbc11", "--pbc", drawn, "--out", tmp_path / "ds", "--work", tmp_path / "work", "--no-progress")
    assert run_cli("naturalize", *args).returncode == 0
    summary = tmp_path / "work" / "prepared" / "summary.json"
    assert json.loads(summary.read_text())["code"] == code_digest(*PREPARE_CODE)
    _restamp(summary, "code")
    before = _files(tmp_path / "ds")
    for more in ((), ("--overwrite",)):
        r = run_cli("naturalize", *args, *more)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        line = r.stderr.strip().splitlines()[-1]
        assert line.startswith("error: ") and "code (another version of naturalize's prepare)" in line, line
        assert _files(tmp_path / "ds") == before
    shutil.rmtree(tmp_path / "work")
    assert run_cli("naturalize", *args).returncode == 0


def test_a_drawn_set_of_other_generator_code_is_not_resumed(tmp_path: Path) -> None:
    """write_drawn_release resumed a folder whose drawn.json matched by a hand-kept generator version: after an edit
    of the generator, a rerun kept the old images and drew only the missing ones in the new way. drawn.json now
    records `code`; a folder of another is refused (one line), and overwrite=True draws it again."""
    from naturalize.fsio import UserError

    out = tmp_path / "drawn"
    write_drawn_release(out, {"PMY": 2}, seed=0, progress=False)
    assert json.loads((out / "drawn.json").read_text())["code"] == code_digest("naturalize.drawn")
    _restamp(out / "drawn.json", "code")
    (first,) = [p for p in out.rglob("PMY_*.jpg") if p.name.endswith("0001.jpg")]
    first.unlink()  # an interrupted run of that other code
    before = _files(out)
    with pytest.raises(UserError, match="drawn with other parameters"):
        write_drawn_release(out, {"PMY": 2}, seed=0, progress=False)
    assert _files(out) == before
    write_drawn_release(out, {"PMY": 2}, seed=0, progress=False, overwrite=True)
    assert first.is_file() and json.loads((out / "drawn.json").read_text())["code"] == code_digest("naturalize.drawn")


def test_a_packages_stamp_covers_every_module_in_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """naturalize.bank became a package (files, masks, stamps, reader, writer); its stamp hashed only __init__.py, so
    an edit of the bank's writer left every bank's `code` as it was and a bank cut by other code was resumed."""
    pkg = tmp_path / "stamped_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from stamped_pkg.writer import X\n")
    (pkg / "writer.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    code_digest.cache_clear()
    before = code_digest("stamped_pkg")
    (pkg / "writer.py").write_text("X = 2\n")
    code_digest.cache_clear()
    try:
        assert code_digest("stamped_pkg") != before
    finally:
        code_digest.cache_clear()


def _outline_script(sample: Path, cache: Path) -> subprocess.CompletedProcess:
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "train_rbc_outline.py"
    env = {**os.environ, "PYTHONPATH": str(script.parents[1])}
    args = [sys.executable, str(script), "--sample", str(sample), "--cache", str(cache)]
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)


def test_the_outline_training_cache_is_read_only_when_made_by_this_code(tmp_path: Path) -> None:
    """benchmarks/train_rbc_outline.py --cache reused the rows in any file it was given, made by any version of the
    segmentation: it now records their code's digest; rows of other code (or of none recorded, as before) are
    refused with one error line and the file is left as it was, and rows of this code are read."""
    sample = tmp_path / "sample"  # two annotated images (never read: the cache holds their rows)
    (sample / "PBC_dataset_normal_DIB" / "neutrophil").mkdir(parents=True)
    (sample / "oi-pbc-boxes").mkdir()
    for stem in ("SNE_1", "SNE_2"):
        (sample / "PBC_dataset_normal_DIB" / "neutrophil" / f"{stem}.jpg").write_bytes(b"")
        (sample / "oi-pbc-boxes" / f"{stem}.txt").write_text("")
    rows = {"x": np.ones((3, 2)), "y": np.array([True, False, True]), "img": np.zeros(3, int)}
    for name, stamp in (("old.npz", {}), ("other.npz", {"code": np.array(OTHER)})):
        np.savez(tmp_path / name, **rows, **stamp)
        before = (tmp_path / name).read_bytes()
        done = _outline_script(sample, tmp_path / name)
        assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
        line = done.stderr.strip().splitlines()[-1]
        assert line.startswith(f"error: {tmp_path / name} holds rows made by other code"), line
        assert (tmp_path / name).read_bytes() == before
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from train_rbc_outline import ROWS_CODE, cached_rows

    cache = tmp_path / "made.npz"
    made = cached_rows(cache, code_digest(*ROWS_CODE), lambda: rows)
    assert all(np.array_equal(made[k], rows[k]) for k in rows)
    done = _outline_script(sample, cache)
    assert done.returncode == 0 and done.stdout.startswith("3 pooled RBCs on 1 tuning images"), done.stderr[-2000:]
