"""The matched scene's per-source cache: seed-independent start-up work, made once per bank.

For one source image (a background row): its plate at the composing size (BGR), its plasma colour, and every
red cell and platelet the bank holds of it: feathered and premultiplied (library.feathered) and warped under
transforms drawn from the sprite's id alone (`sprite_transforms`: the same in every run, whatever the seed).
Stored in BANK/scenes/matched/sources/ as one flat uint8 .npy (memory-mapped when read: the forked workers
share its pages) and a JSON index (offsets and shapes of the arrays, areas, transforms). The JSON holds a
stamp (sha256 of CACHE_VERSION, a digest of the code that makes the entry, the OpenCV version, the parameters
that shape the pixels and the bank rows);
the .npy is named after it, so an index never points to another stamp's data. A stale or unreadable entry
is made again; writes are atomic (the .npy first, the JSON last, then older .npy files of the source go); a
bank that cannot be written to is used without a cache. Everything under BANK/scenes/ is the bank's own
(bank.DERIVED_DIRS): `naturalize segment --overwrite` removes it with the bank.

In: Bank, BackgroundRow, its RBC and PLT SpriteRows, ComposeParams. Out: SourceEntry.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from naturalize.bank import BackgroundRow, Bank, SpriteRow
from naturalize.codeversion import code_digest
from naturalize.compose.library import Variant, feathered, make_variant, plasma_colour, read_bgra, read_plate
from naturalize.compose.params import ComposeParams
from naturalize.compose.transform import Transform, sample_transform
from naturalize.fsio import write_bytes, write_json
from naturalize.outputs import read_record

#: Version of the cached files (a change remakes them).
CACHE_VERSION = 1
CACHE_DIR = "scenes/matched/sources"
#: The name of a data file after its source's background id: "." + the first 16 hex digits of its stamp + ".npy".
_DATA_NAME = re.compile(r"\.[0-9a-f]{16}\.npy")
_SALT = 0x3A7C4ED  # seeds sprite_transforms apart from every seeded draw of a run


def sprite_transforms(sprite_id: str, params: ComposeParams, n: int) -> list[Transform]:
    """n transforms of a sprite drawn from its id alone (sha256 of the id seeds the generator): the same
    in every run (pure)."""
    words = np.frombuffer(hashlib.sha256(sprite_id.encode()).digest()[:16], np.uint32).tolist()
    rng = np.random.default_rng([_SALT, *words])
    return [sample_transform(rng, params) for _ in range(n)]


@dataclass
class SourceEntry:
    """One source image's cached work: BGR plate at the composing size (params.canvas), its plasma colour (BGR
    float32 (3,)), and per sprite id (RBC and PLT, by id) its feathered premultiplied BGRA, mask area and variants."""

    plate: np.ndarray
    plasma: np.ndarray
    bgra: dict[str, np.ndarray]
    areas: dict[str, int]
    variants: dict[str, list[Variant]]


#: The modules whose code shapes an entry's pixels (their digest is part of the stamp).
CODE = ("naturalize.compose.source_cache", "naturalize.compose.library", "naturalize.compose.transform")


def stamp(bg: BackgroundRow, rows: list[SpriteRow], params: ComposeParams) -> str:
    """sha256 of what an entry's pixels depend on: the code (CACHE_VERSION and the digest of CODE), the OpenCV
    version, the parameters, the rows."""
    keys = [params.canvas, params.feather, params.max_angle, params.scale_jitter, params.variants]
    code = [CACHE_VERSION, code_digest(*CODE), cv2.__version__]
    text = json.dumps([*code, keys, repr(bg), [repr(r) for r in rows]])
    return hashlib.sha256(text.encode()).hexdigest()


def make_entry(bank: Bank, bg: BackgroundRow, rows: list[SpriteRow], params: ComposeParams) -> SourceEntry:
    """The entry of one source, made from the bank's files (params.variants variants per sprite)."""
    plate = read_plate(bank.root / bg.relpath, params.canvas)
    bgra, areas, variants = {}, {}, {}
    for r in rows:
        b = feathered(read_bgra(bank.root / r.relpath), params.feather)
        bgra[r.sprite_id] = b
        areas[r.sprite_id] = int(np.count_nonzero(b[:, :, 3] >= 128))
        variants[r.sprite_id] = [make_variant(b, t) for t in sprite_transforms(r.sprite_id, params, params.variants)]
    return SourceEntry(plate, plasma_colour(plate), bgra, areas, variants)


def _pack(entry: SourceEntry, key: str) -> tuple[bytes, dict]:
    """(.npy bytes of every array of the entry, one after another; the JSON index locating them)."""
    parts: list[np.ndarray] = []
    at = 0

    def put(a: np.ndarray) -> list:
        nonlocal at
        parts.append(np.ascontiguousarray(a).ravel())
        at += a.size
        return [at - a.size, list(a.shape)]

    index = {
        "version": CACHE_VERSION,
        "stamp": key,
        "plate": put(entry.plate),
        "plasma": [float(v) for v in entry.plasma],
        "sprites": {
            sid: {
                "bgra": put(b),
                "area": entry.areas[sid],
                "variants": [
                    {"bgri": put(v.bgri), "mask": put(v.mask), "area": v.area, "transform": list(v.transform)}
                    for v in entry.variants[sid]
                ],
            }
            for sid, b in entry.bgra.items()
        },
    }
    index["bytes"] = at
    buf = io.BytesIO()
    np.save(buf, np.concatenate(parts) if parts else np.zeros(0, np.uint8), allow_pickle=False)
    return buf.getvalue(), index


def _unpack(flat: np.ndarray, index: dict) -> SourceEntry:
    """The entry whose arrays are views of `flat` (read-only when memory-mapped)."""

    def get(loc: list) -> np.ndarray:
        start, shape = loc
        return flat[start : start + math.prod(shape)].reshape(shape)

    sprites = index["sprites"]
    return SourceEntry(
        get(index["plate"]),
        np.array(index["plasma"], np.float32),
        {sid: get(s["bgra"]) for sid, s in sprites.items()},
        {sid: int(s["area"]) for sid, s in sprites.items()},
        {
            sid: [
                Variant(get(v["bgri"]), get(v["mask"]), int(v["area"]), Transform(*v["transform"]))
                for v in s["variants"]
            ]
            for sid, s in sprites.items()
        },
    )


def _read(meta: dict, data_path: Path) -> SourceEntry | None:
    try:
        flat = np.load(data_path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return None
    if flat.dtype != np.uint8 or flat.ndim != 1 or flat.size != meta.get("bytes"):
        return None
    return _unpack(np.asarray(flat), meta)


def source_entry(bank: Bank, bg: BackgroundRow, rows: list[SpriteRow], params: ComposeParams) -> SourceEntry:
    """make_entry's result, read (memory-mapped) from the bank's cache when it was made from the same
    stamp, else made and cached (see module doc)."""
    d = bank.root / CACHE_DIR
    meta_path = d / f"{bg.background_id}.json"
    key = stamp(bg, rows, params)
    data_path = d / f"{bg.background_id}.{key[:16]}.npy"
    meta = read_record(meta_path) or {}  # none, unreadable, or not a JSON object: made again
    if meta.get("stamp") == key:
        got = _read(meta, data_path)
        if got is not None:
            return got
    entry = make_entry(bank, bg, rows, params)
    data, index = _pack(entry, key)
    try:
        write_bytes(data_path, data)
        write_json(meta_path, index)
        for old in d.glob(f"{glob.escape(bg.background_id)}.*.npy"):  # only this cache's own older data files
            if old != data_path and _DATA_NAME.fullmatch(old.name[len(bg.background_id) :]):
                old.unlink(missing_ok=True)
    except OSError:
        pass  # a read-only bank: composed from memory, made again next time
    return entry
