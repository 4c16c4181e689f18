"""The pixels the critic sees, decoded the same way whatever the file format, and near-copies among them.

In: image paths and the critic's input side. Out: Pixels (uint8 (N, S, S, 3), and each file's format and size).
Every file is decoded at its own resolution and then resized (bilinear): a JPEG is not downscaled in the DCT domain
as naturalize.decode does for speed (`draft`), since then the same picture saved as JPEG and as PNG reached the
critic as different pixels (mean difference ~1 grey level at 64 px) and a critic told them apart (AUC 0.60 for
the PBC sample's PMY and MY against their own lossless PNG copies). `near_copies` finds images that are the same
picture (a re-save, a re-encoding, a flip) on a 16 x 16 grey thumbnail: mean difference under NEAR grey levels.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from naturalize.fsio import UserError

#: Two 16 x 16 grey thumbnails closer than this (mean absolute difference, grey levels) are one picture: a JPEG
#: re-encoded at quality 75 lies within 0.3 of its original; the nearest two of the PBC sample's 3,508 distinct
#: crops lie 7.5 apart (at 64 px).
NEAR = 2.0


@dataclass(frozen=True)
class Pixels:
    """Decoded images (N, S, S, 3) uint8 and, per image, 'FORMAT WxH' of its file (e.g. 'JPEG 360x363')."""

    x: np.ndarray
    kinds: tuple[str, ...]


def _one(path: Path, size: int) -> tuple[np.ndarray, str] | str:
    from PIL import Image

    from naturalize.decode import load_image

    try:
        with Image.open(path) as im:
            kind = f"{im.format} {im.width}x{im.height}"
        full = load_image(path, None)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        return str(e)
    except UserError as e:
        return str(e.__cause__ or e)
    if full.shape[:2] != (size, size):
        full = np.asarray(Image.fromarray(full).resize((size, size), Image.Resampling.BILINEAR))
    return full, kind


def decode(paths: Sequence[Path], size: int, progress: bool = False, desc: str = "decode", workers: int = 2) -> Pixels:
    """Every path at full resolution, resized to size x size; UserError listing the unreadable files."""
    from tqdm import tqdm

    from classify.images import describe_bad

    x = np.empty((len(paths), size, size, 3), np.uint8)
    kinds, bad = [], []
    with ThreadPoolExecutor(max(1, workers)) as ex:
        done = tqdm(ex.map(lambda p: _one(p, size), paths), total=len(paths), desc=desc, disable=not progress)
        for i, (p, got) in enumerate(zip(paths, done)):
            if isinstance(got, str):
                bad.append((Path(p), got))
                continue
            x[i], kind = got
            kinds.append(kind)
    if bad:
        raise UserError(describe_bad(bad) + "; remove or replace them and rerun")
    return Pixels(x, tuple(kinds))


def thumbnails(x: np.ndarray) -> np.ndarray:
    """(N, 256) float32: each image as a 16 x 16 grey thumbnail (area average)."""
    import cv2

    grey = x.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.stack([cv2.resize(g, (16, 16), interpolation=cv2.INTER_AREA).ravel() for g in grey]).reshape(-1, 256)


def _flips(t: np.ndarray) -> list[np.ndarray]:
    """Thumbnails (N, 256) as they are and flipped left-right, up-down and both (the critic trains on flips)."""
    g = t.reshape(-1, 16, 16)
    return [f.reshape(-1, 256) for f in (g, g[:, :, ::-1], g[:, ::-1], g[:, ::-1, ::-1])]


def near_copies(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask over thumbnails `b`: within NEAR of one in `a`, as they are or flipped (b None: of an earlier
    one in `a`, so the first of each group of near-copies is kept)."""
    from scipy.spatial import cKDTree

    tree, r = cKDTree(a), NEAR * 256
    if b is not None:
        hit = np.zeros(len(b), bool)
        for v in _flips(b):
            hit |= np.isfinite(tree.query(v, k=1, p=1, distance_upper_bound=r)[0])
        return hit
    mask = np.zeros(len(a), bool)
    for v in _flips(a):
        for i, near in enumerate(tree.query_ball_point(v, r, p=1)):
            for j in near:
                if j != i:
                    mask[max(i, j)] = True
    return mask


def formats(kinds: Iterable[str]) -> dict[str, int]:
    """How many images of each 'FORMAT WxH', most common first."""
    return dict(Counter(kinds).most_common())
