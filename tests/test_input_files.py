"""Input files that are not plain PBC JPEGs (phone-rotated, 16-bit, other formats and names), made in tmp_path from
real sample images: every reader sees the same pixels, and the commands give a sensible result or one error line."""

from __future__ import annotations

import json
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
