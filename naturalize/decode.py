"""Decode one input image file the one way every command reads it (segment, compose's scenes, the QC page,
preview, realism, classify).

In: a path (any format and mode Pillow reads: JPEG incl. CMYK and grayscale, PNG incl. palette, RGBA and 16-bit,
TIFF incl. 32-bit integer and float, BMP, WebP). Out: a uint8 RGB array (load_image) or its BGR copy for OpenCV
code (load_bgr).
The rule: the pixels as stored. An EXIF Orientation tag is ignored (cv2.imread would apply it, Pillow does
not: reading a file both ways would put masks found on one on the wrong pixels of the other; a cell has no up,
so nothing is lost). Transparency is laid over white, 16-bit samples are scaled by 255/65535 (never stretched per
image), 32-bit integer ones in 0..255 are kept as they are and those up to 65535 are scaled as 16-bit ones,
floating-point ones in 0..1 by 255, every other mode is converted to RGB. A file that cannot be decoded, or whose
32-bit or floating-point samples are on no such scale, gives a UserError naming it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from naturalize.fsio import UserError


def to_8bit(a: np.ndarray) -> np.ndarray:
    """16-bit samples (0..65535) -> uint8 0..255 by the fixed scale 255/65535, as a 16-bit PNG saved from an 8-bit
    image (v * 257) comes back as that image; never stretched per image, which would change its contrast."""
    return np.clip(np.rint(np.asarray(a, np.float64) / 257.0), 0, 255).astype(np.uint8)


def int32_to_8bit(a: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """A 32-bit integer image (Pillow mode "I", e.g. a 32-bit TIFF) -> uint8: values in 0..255 kept (an 8-bit image
    saved wider), values up to 65535 scaled as 16-bit samples (to_8bit); UserError naming the file for negative
    values or values above 65535 (their scale cannot be known; a guess would be silently wrong)."""
    lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
    if lo < 0 or hi > 65535:
        raise UserError(
            f"cannot read image {path}: 32-bit integer samples from {lo} to {hi}, neither 0..255 nor 0..65535; "
            f"save it as an 8-bit (or 16-bit) image"
        )
    return a.astype(np.uint8) if hi <= 255 else to_8bit(a)


def float_to_8bit(a: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """A floating-point image (e.g. a 32-bit float TIFF) -> uint8: values in 0..1 scaled by 255, values in 0..255
    kept; UserError naming the file for any other range (its scale cannot be known; a guess would be silently
    wrong)."""
    lo, hi = (float(np.nanmin(a)), float(np.nanmax(a))) if a.size else (0.0, 0.0)
    if np.isnan(a).any() or lo < 0 or hi > 255:
        raise UserError(
            f"cannot read image {path}: floating-point samples from {lo:g} to {hi:g}, neither 0..1 nor 0..255; "
            f"save it as an 8-bit (or 16-bit) image"
        )
    return np.clip(np.rint(a * (255.0 if hi <= 1 else 1.0)), 0, 255).astype(np.uint8)


def load_image(path: str | os.PathLike, size: int | None) -> np.ndarray:
    """One image file -> uint8 (size, size, 3) RGB, or (H, W, 3) at its own resolution when size is None.
    UserError naming the file when it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        if os.path.islink(path) and not os.path.exists(path):
            raise FileNotFoundError(f"a dangling symlink to {Path(path).readlink()}")
        with Image.open(path) as im:
            if im.format == "JPEG" and size is not None:
                im.draft("RGB", (size, size))  # DCT-domain downscale: exact, fast, never below `size`
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                rgb = Image.new("RGB", rgba.size, (255, 255, 255))
                rgb.paste(rgba, mask=rgba.getchannel("A"))
            elif im.mode in ("I;16", "I;16B", "I;16L") or (im.mode == "I" and im.format == "PNG"):
                # a PNG holds at most 16 bits (older Pillow opens a 16-bit one as "I")
                rgb = Image.fromarray(to_8bit(np.asarray(im))).convert("RGB")
            elif im.mode == "I":
                rgb = Image.fromarray(int32_to_8bit(np.asarray(im), path)).convert("RGB")
            elif im.mode == "F":
                rgb = Image.fromarray(float_to_8bit(np.asarray(im), path)).convert("RGB")
            else:
                rgb = im.convert("RGB")
            if size is not None and rgb.size != (size, size):
                rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
            return np.array(rgb, dtype=np.uint8)  # a writable copy: callers may draw on it
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise UserError(f"cannot read image {path}: {e}; remove or replace the file") from e


def load_bgr(path: str | os.PathLike) -> np.ndarray:
    """One image file at its own resolution -> uint8 (H, W, 3) BGR (for OpenCV code), the same pixels as
    load_image; use it instead of cv2.imread(path, IMREAD_COLOR), which turns an image by its EXIF tag."""
    return np.ascontiguousarray(load_image(path, None)[:, :, ::-1])
