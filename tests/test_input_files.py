"""Input files that are not plain PBC JPEGs (phone-rotated, 16-bit, other formats and names), made in tmp_path from
real sample images: every reader sees the same pixels, and the commands give a sensible result or one error line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from naturalize.decode import load_bgr, load_image
from naturalize.testing.cli import run_cli

ORIENTATION = 0x0112  # the EXIF Orientation tag; 6: turn 90 degrees clockwise to show


def real_images(release: Path, folder: str, prefix: str, n: int) -> list[Path]:
    """The first n sample images of one class."""
    return sorted(p for p in (release / folder).iterdir() if p.name.startswith(prefix))[:n]


def save_phone_rotated(src: Path, dst: Path) -> np.ndarray:
    """Write `src` as a phone does a picture taken sideways: the pixels turned 90 degrees counter-clockwise and the
    Orientation tag 6 set (a viewer shows it upright). Returns the stored pixels (RGB)."""
    stored = Image.open(src).convert("RGB").transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    dst.parent.mkdir(parents=True, exist_ok=True)
    stored.save(dst, quality=95, exif=exif)
    with Image.open(dst) as im:
        assert im.getexif().get(ORIENTATION) == 6
        return np.asarray(im.convert("RGB"))


def test_a_phone_rotated_jpeg_is_read_as_stored_by_every_decoder(sample_release: Path, tmp_path: Path) -> None:
    src = real_images(sample_release, "ig", "PMY_", 1)[0]
    stored = save_phone_rotated(src, tmp_path / "PMY_1.jpg")
    h, w = stored.shape[:2]
    assert (h, w) == Image.open(src).size  # the tag would turn it back: width and height swap
    np.testing.assert_array_equal(load_image(tmp_path / "PMY_1.jpg", None), stored)
    np.testing.assert_array_equal(load_bgr(tmp_path / "PMY_1.jpg"), stored[:, :, ::-1])


@pytest.fixture(scope="module")
def rotated_bank(sample_release: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """(PBC tree of 3 phone-rotated real PMY images, its classical bank, stored RGB pixels per source)."""
    root = tmp_path_factory.mktemp("rotated")
    tree, bank = root / "pbc", root / "bank"
    stored = {
        f"PMY/{src.name}": save_phone_rotated(src, tree / "PMY" / src.name)
        for src in real_images(sample_release, "ig", "PMY_", 3)
    }
    r = run_cli(
        "naturalize", "segment", tree, "--out", bank, "--backend", "classical", "--workers", "1", "--no-progress"
    )
    assert r.returncode == 0, r.stderr
    return tree, bank, stored


def test_transplant_donor_of_a_phone_rotated_source_is_its_stored_pixels(rotated_bank: tuple[Path, Path, dict]) -> None:
    from naturalize.bank import Bank
    from naturalize.compose.scenes import make_donor

    _, root, stored = rotated_bank
    bank = Bank.open(root)
    donors = 0
    for bg in bank.backgrounds:
        wbc = next((s for s in bank.sprites if s.source == bg.source and s.kind == "WBC"), None)
        if wbc is None:
            continue
        plate, labels, _ = make_donor(bank, bg, wbc, [])
        rgb = stored[bg.source]
        assert plate.shape == rgb.shape  # the white cell's hole and the kept cells' masks lie on these pixels
        assert (plate == rgb[:, :, ::-1]).all(axis=2).mean() > 0.5  # all but the inpainted hole is the source
        donors += 1
    assert donors


def test_qc_page_outlines_a_phone_rotated_source_on_its_stored_pixels(rotated_bank: tuple[Path, Path, dict]) -> None:
    from naturalize.bank import Bank
    from naturalize.segment.qc import outlined_source

    tree, bank, stored = rotated_bank
    for source, rgb in stored.items():
        shown = outlined_source(Bank.open(bank), tree, source)
        assert shown is not None and shown.shape == rgb.shape


def test_segment_reads_a_16bit_tiff_as_its_8bit_image(sample_release: Path, tmp_path: Path) -> None:
    from naturalize.segment.run import read_rgb

    src = real_images(sample_release, "ig", "PMY_", 1)[0]
    grey = np.asarray(Image.open(src).convert("L"))
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "PMY_16.tif")
    Image.fromarray(grey).save(tmp_path / "PMY_8.png")
    np.testing.assert_array_equal(read_rgb(str(tmp_path / "PMY_16.tif")), read_rgb(str(tmp_path / "PMY_8.png")))


def test_realism_reads_every_kind_of_image_the_other_commands_read(sample_release: Path, tmp_path: Path) -> None:
    from naturalize.paths import IMAGE_SUFFIXES
    from naturalize.realism.data import gather

    srcs = real_images(sample_release, "ig", "PMY_", len(IMAGE_SUFFIXES))
    for src, suffix in zip(srcs, sorted(IMAGE_SUFFIXES)):
        Image.open(src).save(tmp_path / f"{src.stem}{suffix.upper()}")
    assert sorted(p.suffix.lower() for p in gather(tmp_path, "--real").paths) == sorted(IMAGE_SUFFIXES)


def test_prepare_leaves_out_hidden_images_as_classify_does(sample_release: Path, tmp_path: Path) -> None:
    from classify.datasets import scan_images
    from naturalize.records import scan

    for cls, folder, prefix in (("PMY", "ig", "PMY_"), ("LY", "lymphocyte", "LY_")):
        srcs = real_images(sample_release, folder, prefix, 4)
        (tmp_path / cls).mkdir()
        for i, src in enumerate(srcs):  # a hidden copy, as an editor's or a sync tool's leftover would be
            (tmp_path / cls / (f".{src.name}" if i == 0 else src.name)).write_bytes(src.read_bytes())
    result = scan(tmp_path, workers=1, progress=False)
    read_by_classify = [p.relative_to(tmp_path).as_posix() for c in ("LY", "PMY") for p in scan_images(tmp_path / c)[0]]
    assert sorted(r.path for r in result.records) == sorted(read_by_classify) and len(read_by_classify) == 6
    assert sorted((d.path.split("/")[0], d.reason) for d in result.dropped) == [("LY", "hidden"), ("PMY", "hidden")]
    r = run_cli("naturalize", "prepare", tmp_path, "--out", tmp_path.parent / "prep", "--no-progress")
    assert r.returncode == 0 and "note: skipped 2 hidden or system file(s)" in r.stdout, r.stdout + r.stderr


def test_compose_refuses_a_bank_cut_from_crops_far_from_the_pbc_size(sample_release: Path, tmp_path: Path) -> None:
    tree, bank = tmp_path / "pbc", tmp_path / "bank"
    (tree / "PMY").mkdir(parents=True)
    srcs = real_images(sample_release, "ig", "PMY_", 4)
    for src in srcs[1:]:
        (tree / "PMY" / src.name).write_bytes(src.read_bytes())
    Image.open(srcs[0]).resize((1000, 1000), Image.Resampling.BICUBIC).save(tree / "PMY" / srcs[0].name, quality=95)
    args = ("--backend", "classical", "--workers", "1", "--no-progress")
    assert run_cli("naturalize", "segment", tree, "--out", bank, *args).returncode == 0
    r = run_cli("naturalize", "compose", "--class", "PMY", "--n", "2", "--bank", bank, "--out", tmp_path / "syn")
    assert r.returncode == 2 and r.stderr.count("error:") == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"PMY/{srcs[0].name} (1000x1000)" in r.stderr and "Resize" in r.stderr
    assert not (tmp_path / "syn").exists()


def test_a_symlinked_class_folder_is_read_by_every_command(sample_release: Path, tmp_path: Path) -> None:
    from classify.predict import gather_images
    from naturalize.compose.preview import find_images
    from naturalize.realism.data import gather
    from naturalize.records import scan

    tree, elsewhere = tmp_path / "pbc", tmp_path / "elsewhere"
    for cls, folder, prefix in (("PMY", "ig", "PMY_"), ("LY", "lymphocyte", "LY_")):
        target = (elsewhere if cls == "LY" else tree) / cls
        target.mkdir(parents=True)
        for src in real_images(sample_release, folder, prefix, 3):
            (target / src.name).write_bytes(src.read_bytes())
    (tree / "LY").symlink_to(elsewhere / "LY", target_is_directory=True)
    (tree / "PMY" / "loop").symlink_to(tree, target_is_directory=True)  # a link back up: read once, no endless walk
    want = [f"LY/{p.name}" for p in sorted((elsewhere / "LY").iterdir())] + [
        f"PMY/{p.name}" for p in sorted((tree / "PMY").glob("*.jpg"))
    ]
    rel = lambda paths: sorted(p.relative_to(tree).as_posix() for p in paths)  # noqa: E731
    assert sorted(r.path for r in scan(tree, workers=1, progress=False).records) == want
    assert rel(gather_images([tree])) == want  # classify predict / explain
    assert rel(gather(tree, "--real").paths) == want  # naturalize realism
    assert rel(find_images(tree)[0]) == want  # naturalize preview


def test_prepare_and_segment_skip_an_image_too_large_to_decode(sample_release: Path, tmp_path: Path) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    tree = tmp_path / "pbc"
    (tree / "PMY").mkdir(parents=True)
    for src in real_images(sample_release, "ig", "PMY_", 3):
        (tree / "PMY" / src.name).write_bytes(src.read_bytes())
    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)  # 400 M pixels claimed (a scan's export), tiny file
    (tree / "PMY" / "PMY_huge.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")
    )
    r = run_cli("naturalize", "prepare", tree, "--out", tmp_path / "prep", "--no-progress")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "skipped PMY/PMY_huge.png: too large to decode (Image size (400000000 pixels)" in r.stdout, r.stdout
    r = run_cli("naturalize", "segment", tree, "--out", tmp_path / "bank", "--backend", "classical", "--no-progress")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert len((tmp_path / "bank" / "curation.csv").read_text().splitlines()) == 1 + 3


def test_outputs_named_after_an_input_with_a_very_long_name_fit_the_file_system(tmp_path: Path) -> None:
    from classify.scorecam import cam_names
    from naturalize.fsio import write_bytes

    long_jpg = tmp_path / "PMY" / f"PMY_{'é' * 60}{'y' * 120}.jpg"  # 249 bytes: a legal name
    long_jpg.parent.mkdir()
    long_jpg.write_bytes(b"")
    (cam,) = cam_names([tmp_path], [long_jpg])
    assert cam.parent == Path("PMY") and cam.suffix == ".png" and len(cam.name.encode()) <= 255
    assert cam.name.startswith("PMY_éé")
    target = tmp_path / "out" / f"{'z' * 250}.png"  # fits, but the temp name beside it did not
    write_bytes(target, b"png")
    assert target.read_bytes() == b"png" and [p.name for p in target.parent.iterdir()] == [target.name]


def test_segment_takes_a_source_with_a_very_long_file_name(sample_release: Path, tmp_path: Path) -> None:
    tree = tmp_path / "pbc"
    (tree / "PMY").mkdir(parents=True)
    srcs = real_images(sample_release, "ig", "PMY_", 3)
    for i, src in enumerate(srcs):
        (tree / "PMY" / (f"PMY_{'y' * 245}.jpg" if i == 0 else src.name)).write_bytes(src.read_bytes())
    r = run_cli("naturalize", "segment", tree, "--out", tmp_path / "bank", "--backend", "classical", "--no-progress")
    assert r.returncode == 0, r.stderr[-300:]
    assert len((tmp_path / "bank" / "curation.csv").read_text().splitlines()) == 1 + 3


def test_a_float_tiff_is_read_on_its_scale_or_refused_by_name(sample_release: Path, tmp_path: Path) -> None:
    from naturalize.fsio import UserError

    grey = np.asarray(Image.open(real_images(sample_release, "ig", "PMY_", 1)[0]).convert("L"))
    want = np.repeat(grey[:, :, None], 3, axis=2)
    Image.fromarray(grey.astype(np.float32) / 255).save(tmp_path / "unit.tif")  # 0..1, as image libraries write
    Image.fromarray(grey.astype(np.float32)).save(tmp_path / "bytes.tif")
    np.testing.assert_array_equal(load_image(tmp_path / "unit.tif", None), want)
    np.testing.assert_array_equal(load_image(tmp_path / "bytes.tif", None), want)
    Image.fromarray(grey.astype(np.float32) * 100).save(tmp_path / "raw.tif")  # a camera's raw counts: scale unknown
    with pytest.raises(UserError, match=r"raw\.tif: floating-point samples from .* save it as an 8-bit"):
        load_image(tmp_path / "raw.tif", None)


def test_a_32bit_integer_tiff_is_read_on_its_scale_or_refused_by_name(sample_release: Path, tmp_path: Path) -> None:
    from naturalize.fsio import UserError

    grey = np.asarray(Image.open(real_images(sample_release, "ig", "PMY_", 1)[0]).convert("L"))
    want = np.repeat(grey[:, :, None], 3, axis=2)
    Image.fromarray(grey.astype(np.int32)).save(tmp_path / "bytes.tif")  # an 8-bit image saved 32-bit wide
    Image.fromarray(grey.astype(np.int32) * 257).save(tmp_path / "words.tif")  # a 16-bit one saved so
    for name in ("bytes.tif", "words.tif"):
        with Image.open(tmp_path / name) as im:
            assert im.mode == "I"
        np.testing.assert_array_equal(load_image(tmp_path / name, None), want)
    Image.fromarray(grey.astype(np.int32) * 1000).save(tmp_path / "counts.tif")  # up to 255,000: scale unknown
    Image.fromarray(grey.astype(np.int32) - 128).save(tmp_path / "signed.tif")
    for name in ("counts.tif", "signed.tif"):
        with pytest.raises(UserError, match=rf"{name.replace('.', '[.]')}: 32-bit integer samples from .* 8-bit"):
            load_image(tmp_path / name, None)


def test_prepare_reads_the_image_names_classify_reads(sample_release: Path, tmp_path: Path) -> None:
    from classify.datasets import scan_images
    from naturalize.records import scan

    srcs = real_images(sample_release, "ig", "PMY_", 5)
    (tmp_path / "PMY").mkdir()
    for src in srcs[:3]:
        (tmp_path / "PMY" / src.name).write_bytes(src.read_bytes())
    Image.open(srcs[3]).save(tmp_path / "PMY" / "PMY_1.gif")  # decodes, but classify does not read .gif
    (tmp_path / "PMY" / "PMY_2.jpg.bak").write_bytes(srcs[4].read_bytes())  # an editor's backup of a JPEG
    result = scan(tmp_path, workers=1, progress=False)
    assert sorted(r.path for r in result.records) == [f"PMY/{p.name}" for p in scan_images(tmp_path / "PMY")[0]]
    why = {d.path: (d.reason, d.detail) for d in result.dropped}
    assert why["PMY/PMY_1.gif"][0] == why["PMY/PMY_2.jpg.bak"][0] == "non_image"
    assert "not an image file name (.gif;" in why["PMY/PMY_1.gif"][1]


def test_hidden_and_system_files_are_skipped_unread_and_counted_in_one_note(tmp_path: Path) -> None:
    """The sample holds neutrophil/.DS_169665.jpg (a macOS leftover). prepare read ._X.jpg (AppleDouble), .DS_Store
    and Thumbs.db and called them non-images; segment on a raw tree, build and classify said nothing of any. Each
    now skips them unread and says how many in one note line; none is an image of a class."""
    from classify.datasets import load_dataset
    from naturalize.drawn import write_drawn_release

    pbc = tmp_path / "pbc"
    write_drawn_release(pbc, 3, seed=0, progress=False)
    folder = pbc / "neutrophil"
    hidden = {
        ".DS_169665.jpg": (folder / "SNE_drawn_0001.jpg").read_bytes(),  # a hidden copy of a real image
        "._SNE_drawn_0002.jpg": b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ",  # AppleDouble metadata
        ".DS_Store": b"\x00\x00\x00\x01Bud1",
        "Thumbs.db": b"\xd0\xcf\x11\xe0",
    }
    for name, data in hidden.items():
        (folder / name).write_bytes(data)
    note = "note: skipped 4 hidden or system file(s)"

    r = run_cli("naturalize", "prepare", pbc, "--out", tmp_path / "prep", "--no-progress")
    assert r.returncode == 0 and r.stdout.count(note) == 1, r.stdout + r.stderr
    dropped = (tmp_path / "prep" / "dropped.csv").read_text()
    assert all(f"neutrophil/{name},hidden," in dropped for name in hidden), dropped
    assert not any(name in (tmp_path / "prep" / "records.csv").read_text() for name in hidden)

    r = run_cli("naturalize", "segment", pbc, "--out", tmp_path / "bank", "--workers", "1", "--no-progress")
    assert r.returncode == 0 and (r.stdout + r.stderr).count(note) == 1, r.stdout + r.stderr
    assert "33 images" in r.stdout

    args = ("--pbc", pbc, "--out", tmp_path / "ds", "--work", tmp_path / "work", "--no-progress")
    r = run_cli("naturalize", "build", "pbc11", *args)
    assert r.returncode == 0 and (r.stdout + r.stderr).count(note) == 1, r.stdout + r.stderr
    assert not any(name in (tmp_path / "ds" / "files.csv").read_text() for name in hidden)

    said: list[str] = []
    data = load_dataset(pbc, warn=said.append)
    assert [line for line in said if line.startswith("note:")] == [
        f"{note} (dot-files such as .DS_Store or ._* AppleDouble copies, Thumbs.db), e.g. neutrophil/.DS_169665.jpg; "
        "no command reads them"
    ]
    assert not any(line.startswith("warning:") for line in said), said  # Thumbs.db is no "entry not read" either
    assert sum(len(rows) for rows in data.items.values()) == 33
