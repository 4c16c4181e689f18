"""Decode images once into a uint8 (N, S, S, 3) cache so training feeds batches from memory.

Files are decoded by naturalize.decode (the one rule every command reads images by: pixels as stored, any mode
to RGB) and resized to S x S; nothing is rejected but files Pillow cannot read (or refuses as a decompression
bomb). The cache is a .npy file under $CLASSIFY_CACHE (else ~/.cache/naturalize/classify), keyed by the image
size, each file's path, size and mtime, and the decoding code's digest and Pillow's version (cache_stamp),
written atomically and memory-mapped.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

import numpy as np

from naturalize.codeversion import code_digest
from naturalize.decode import load_image as load_image  # the one decoder (re-exported for classify's modules)
from naturalize.fsio import UserError, atomic_open, temp_target
from naturalize.paths import env_path


def cache_home() -> Path:
    """The cache directory: $CLASSIFY_CACHE, else ~/.cache/naturalize/classify."""
    return env_path("CLASSIFY_CACHE", Path.home() / ".cache" / "naturalize" / "classify")


#: The modules whose code decodes and resizes the cached images (their digest is part of the cache key).
DECODE_CODE = ("classify.images", "naturalize.decode")


def cache_stamp() -> list[str]:
    """What the cached pixels depend on besides the files: this code (a digest of DECODE_CODE) and Pillow's version.
    Keys of older caches began with a hand-kept version ("v2", "v3"), which no digest equals: never read now."""
    import PIL

    return [code_digest(*DECODE_CODE), PIL.__version__]


def _key(paths: Sequence[Path], size: int, stamp: Sequence[str] | None = None) -> str:
    """The cache file's key: `stamp` (default cache_stamp()), the size, and each file's path, size and mtime."""
    h = hashlib.sha1(json.dumps([*(cache_stamp() if stamp is None else stamp), size]).encode())
    for p in paths:
        try:
            st = p.stat()
        except OSError:  # gone or a dangling symlink: decoding names it
            h.update(f"{p}\0missing\n".encode())
            continue
        h.update(f"{p.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def describe_bad(bad: Sequence[tuple[Path, str]], shown: int = 5) -> str:
    """'3 image(s) cannot be read: a.jpg (why); b.jpg (why); ...' (the first `shown`, then a count)."""
    head = "; ".join(f"{p} ({why})" for p, why in bad[:shown])
    more = f"; and {len(bad) - shown} more" if len(bad) > shown else ""
    return f"{len(bad)} image(s) cannot be read: {head}{more}"


def decode_some(
    paths: Sequence[Path], size: int, workers: int = 2, progress: bool = True, desc: str = "decode"
) -> tuple[np.ndarray, list[int], list[tuple[Path, str]]]:
    """Decode and resize every readable path (threads; PIL releases the GIL), in one pass over all of them.
    Returns (uint8 array of the readable ones, their indices into `paths`, [(path, reason)] of the others)."""
    from tqdm import tqdm

    def one(p: Path) -> np.ndarray | str:
        try:
            return load_image(p, size)
        except UserError as e:
            return str(e.__cause__ or e)

    out = np.empty((len(paths), size, size, 3), np.uint8)
    good: list[int] = []
    bad: list[tuple[Path, str]] = []
    with ThreadPoolExecutor(max(1, workers)) as ex:
        it = ex.map(one, paths)
        for i, a in enumerate(tqdm(it, total=len(paths), desc=desc, unit="img", disable=not progress, leave=False)):
            if isinstance(a, str):
                bad.append((Path(paths[i]), a))
            else:
                out[len(good)] = a
                good.append(i)
    return out[: len(good)], good, bad


def decode_all(
    paths: Sequence[Path], size: int, workers: int = 2, progress: bool = True, desc: str = "decode"
) -> np.ndarray:
    """Decode and resize every path into a new uint8 array; UserError listing every unreadable file (all found in
    one pass) when any is, since going on would silently train or evaluate on fewer images."""
    arr, _, bad = decode_some(paths, size, workers, progress, desc)
    if bad:
        raise UserError(describe_bad(bad) + "; remove or replace them and rerun")
    return arr


def cached_array(
    paths: Sequence[Path], size: int, workers: int = 2, progress: bool = True, desc: str = "decode"
) -> np.ndarray:
    """The (N, size, size, 3) uint8 array for `paths`, from the cache (memory-mapped) or decoded once into it."""
    paths = [Path(p) for p in paths]
    target = cache_home() / f"{_key(paths, size)}_{size}.npy"
    if target.is_file():
        arr = np.load(target, mmap_mode="r")
        if arr.shape == (len(paths), size, size, 3):
            return arr
    arr = decode_all(paths, size, workers, progress, desc)
    with atomic_open(target, "wb") as f:
        write_npy(f, arr)
    return np.load(target, mmap_mode="r")


_CACHE_FILE = re.compile(r"[0-9a-f]{20}_\d+\.npy")


def written_by_cache(rel: str) -> bool:
    """Whether `rel`, a file's path inside the cache directory, is one cached_array writes there
    (`<key>_<size>.npy`), or the temporary file of one."""
    return _CACHE_FILE.fullmatch(temp_target(rel) or rel) is not None


def write_npy(f: IO[bytes], arr: np.ndarray) -> None:
    """`arr` to the open file `f` in .npy format, the bytes np.save writes, by Python's own write: np.save writes
    an array to a real file with C's fwrite and reports a full disk as "OSError: 92160 requested and 36736 written",
    with no errno and no file, which the command then showed as a traceback instead of its one no-room line."""
    arr = np.ascontiguousarray(arr)
    np.lib.format.write_array_header_1_0(f, np.lib.format.header_data_from_array_1_0(arr))
    f.write(arr.reshape(-1).view(np.uint8).data)
