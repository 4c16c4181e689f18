"""The sprite bank on disk: the format `naturalize segment` writes and `naturalize compose` reads.

BANK/bank.json               format_version, code (digest), backend, parameters, counts per kind/class
BANK/index.csv               one row per sprite (INDEX_FIELDS)
BANK/sprites/<kind>/[<label>/]<sprite_id>.png   RGBA, tight crop, alpha = mask: sprites that passed the gate
BANK/backgrounds.csv         one row per background plate (BACKGROUND_FIELDS)
BANK/backgrounds/<background_id>.png            the source image with every cell inpainted
BANK/curation.csv            one row per source image (CURATION_FIELDS)
BANK/qc/                     the QC page (naturalize/segment/qc.py), remade after each run
BANK/scenes/                 compose's caches made once per bank (transplant donors, matched statistics and sources)

A sprite the quality gate rejected (reason other than "ok") has no PNG file: its index.csv row holds its mask in
the `mask` column (a COCO RLE, pycocotools' compact string, of the mask inside the row's box); `Bank.load_sprite`
cuts its pixels from the source image (bank.json `root` + row.source). A non-empty `mask` column = no PNG file.
Format version 1 (every sprite a PNG file, no `mask` column) is still read; a run never resumes one.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from naturalize.fsio import UserError, read_json, replace_bytes, write_all, write_bytes
from naturalize.outputs import claim, read_record, remove_written, write_marker

FORMAT_VERSION = 2  # 2: rejected sprites stored as a mask in index.csv (1: every sprite a PNG file)
#: The bank formats this naturalize reads (it writes and resumes only FORMAT_VERSION).
READ_VERSIONS: tuple[int, ...] = (1, 2)
KINDS: tuple[str, ...] = ("RBC", "WBC", "PLT")
INDEX_FIELDS = [
    "sprite_id",
    "kind",
    "label",
    "source",
    "x0",
    "y0",
    "x1",
    "y1",
    "area",
    "score",
    "touches_border",
    "quality",
    "reason",
    "mask",
]
#: Columns a bank written before the quality gate lacks (read as quality 1.0, reason "ok": passed).
GATE_FIELDS = ["quality", "reason"]
#: Columns a bank of format version 1 lacks (read as "": every sprite a PNG file).
OPTIONAL_FIELDS = GATE_FIELDS + ["mask"]
#: The reason of a sprite that passed the quality gate (naturalize/segment/gate.py lists the others).
PASS = "ok"
BACKGROUND_FIELDS = ["background_id", "source", "label", "width", "height"]
CURATION_FIELDS = ["source", "label", "n_wbc", "n_rbc", "n_plt", "flags", "keep"]


@dataclass(frozen=True)
class SpriteRow:
    """One sprite: `source` is the source image's path relative to the PBC root; box is [x0, x1) x [y0, y1);
    quality (0..1) and reason come from the quality gate: only reason "ok" is composited. `mask`: "" for a sprite
    stored as a PNG file (relpath), else the COCO RLE string of its mask in the box (no file)."""

    sprite_id: str
    kind: str
    label: str
    source: str
    x0: int
    y0: int
    x1: int
    y1: int
    area: int
    score: float
    touches_border: bool
    quality: float = 1.0
    reason: str = PASS
    mask: str = ""

    @property
    def has_png(self) -> bool:
        """Whether the sprite is a PNG file in the bank (else only its mask is stored, in index.csv)."""
        return not self.mask

    @property
    def relpath(self) -> str:
        """Path of the sprite PNG inside the bank (a file only where has_png)."""
        sub = f"{self.kind}/{self.label}" if self.label else self.kind
        return f"sprites/{sub}/{self.sprite_id}.png"


@dataclass(frozen=True)
class BackgroundRow:
    """One cell-free background plate made from `source` (label = the source image's class)."""

    background_id: str
    source: str
    label: str
    width: int
    height: int

    @property
    def relpath(self) -> str:
        return f"backgrounds/{self.background_id}.png"


def _bool(v: str) -> bool:
    return v in ("1", "True", "true")


@functools.cache
def _converters(cls) -> tuple[tuple[str, Callable[[str], Any]], ...]:
    """(field name, str -> value) for each field of a row dataclass."""
    conv: dict[object, Callable[[str], Any]] = {
        "int": int,
        int: int,
        "float": float,
        float: float,
        "bool": _bool,
        bool: _bool,
    }
    return tuple((f.name, conv.get(f.type, str)) for f in fields(cls))


def _coerce(cls, row: dict[str, str]):
    return cls(**{name: conv(row[name]) for name, conv in _converters(cls) if row.get(name) is not None})


def _read_rows(path: Path, text: str, cls, required: list[str]) -> list:
    """Rows of one bank CSV (its committed `text`; empty: no rows) as `cls` objects."""
    if not text:
        return []
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = set(required) - set(reader.fieldnames or [])
    if missing:
        raise UserError(f"{path}: missing columns {sorted(missing)}; rebuild the bank with `naturalize segment`")
    # A row cut short by an interrupted run lacks required values: it is not part of the bank (optional
    # columns left empty, as in rows written before the quality gate, take their defaults).
    return [_coerce(cls, r) for r in reader if all(r.get(k) is not None for k in required)]


def _committed_text(root: Path, name: str, record: object) -> str:
    """The part of a bank CSV that bank.json vouches for: its first `bytes` bytes, checked against the recorded
    row count and SHA-256 (rows appended after the last bank.json write belong to an unfinished image). A file
    that is shorter or differs was changed after `naturalize segment` wrote it: UserError."""
    path = root / name
    data = path.read_bytes() if path.is_file() else b""
    if record is None:  # a bank written before checksums were recorded
        return data.decode("utf-8")
    if not isinstance(record, dict) or not {"bytes", "rows", "sha256"} <= record.keys():
        raise UserError(
            f"{root / 'bank.json'} is damaged (its record of {name}); rebuild the bank with "
            f"`naturalize segment ... --out {root} --overwrite`"
        )
    head = data[: record["bytes"]]
    rows = max(0, head.count(b"\n") - 1)
    if len(data) < record["bytes"] or rows != record["rows"] or hashlib.sha256(head).hexdigest() != record["sha256"]:
        have = max(0, data.count(b"\n") - 1)
        raise UserError(
            f"{path} no longer matches its bank ({have} rows, bank.json records {record['rows']} and a "
            f"checksum): it was truncated or edited; rebuild the bank with `naturalize segment ... "
            f"--out {root} --overwrite`"
        )
    return head.decode("utf-8")


def file_record(meta: dict, name: str) -> object:
    """What bank.json records of one CSV ({bytes, rows, sha256}), None for a bank written before it did."""
    files = meta.get("files")
    return files.get(name) if isinstance(files, dict) else files


def read_bank_meta(root: Path) -> dict:
    """bank.json of `root` as a dict; UserError when it is missing, damaged or of another format version."""
    meta_path = root / "bank.json"
    if not meta_path.is_file():
        raise UserError(
            f"{root} is not a sprite bank (no bank.json); make one with `naturalize segment PBC_ROOT --out {root}`"
        )
    meta = read_json(
        meta_path,
        f"{meta_path} is damaged (not JSON); rebuild the bank with `naturalize segment ... --out {root} --overwrite`",
    )
    if not isinstance(meta, dict) or meta.get("format_version") not in READ_VERSIONS:
        version = meta.get("format_version") if isinstance(meta, dict) else None
        raise UserError(
            f"{meta_path}: bank format version {version}, this naturalize reads "
            f"{' and '.join(map(str, READ_VERSIONS))}; "
            f"rebuild it with `naturalize segment ... --out {root} --overwrite`"
        )
    return meta


class Bank:
    """Read access to a sprite bank. `Bank.open(path)` validates the format version."""

    def __init__(
        self,
        root: Path,
        meta: dict,
        sprites: list[SpriteRow],
        backgrounds: list[BackgroundRow],
        curation: list[dict[str, str]],
    ):
        self.root = root
        self.meta = meta
        self.sprites = sprites
        self.backgrounds = backgrounds
        self.curation = curation
        self._source: tuple[str, np.ndarray] | None = None  # the last source image read (load_sprite)

    @classmethod
    def open(cls, path: str | Path) -> Bank:
        """Read a bank; UserError when bank.json is missing or damaged, or a CSV no longer matches it."""
        root = Path(path)
        meta = read_bank_meta(root)
        text = {name: _committed_text(root, name, file_record(meta, name)) for name in CSV_FILES}
        curation = _read_dicts(text["curation.csv"])
        done = {r["source"] for r in curation}
        required = [f for f in INDEX_FIELDS if f not in OPTIONAL_FIELDS]  # older banks: passed, PNG files
        sprites = [
            s for s in _read_rows(root / "index.csv", text["index.csv"], SpriteRow, required) if s.source in done
        ]
        backgrounds = [
            b
            for b in _read_rows(root / "backgrounds.csv", text["backgrounds.csv"], BackgroundRow, BACKGROUND_FIELDS)
            if b.source in done
        ]
        return cls(root, meta, sprites, backgrounds, curation)

    def select(self, kind: str, label: str | None = None) -> list[SpriteRow]:
        """Sprites of one kind (and WBC label) that passed the quality gate (stored as PNG files), whole."""
        return [
            s
            for s in self.sprites
            if s.kind == kind and (label is None or s.label == label) and s.reason == PASS and not s.touches_border
        ]

    def load_sprite(self, row: SpriteRow) -> np.ndarray:
        """RGBA uint8 array (h, w, 4) of one sprite: its PNG file, or for a mask-only row the cell cut from its
        source image (UserError naming the file when that cannot be read)."""
        if row.has_png:
            with Image.open(self.root / row.relpath) as im:
                return np.asarray(im.convert("RGBA"))
        rgb = self._source_rgb(row.source)
        rgba = np.empty((row.y1 - row.y0, row.x1 - row.x0, 4), np.uint8)
        rgba[:, :, :3] = rgb[row.y0 : row.y1, row.x0 : row.x1]
        rgba[:, :, 3] = np.where(self.load_mask(row), 255, 0).astype(np.uint8)
        return rgba

    def load_mask(self, row: SpriteRow, threshold: int = 128) -> np.ndarray:
        """Bool mask (h, w) of one sprite in its box: decoded from index.csv, or alpha >= threshold of its PNG file
        (no source image needed); UserError when the PNG cannot be read."""
        if not row.has_png:
            return decode_mask(row.mask, row.y1 - row.y0, row.x1 - row.x0)
        import cv2

        a = cv2.imread(str(self.root / row.relpath), cv2.IMREAD_UNCHANGED)
        if a is None or a.ndim != 3 or a.shape[2] != 4:
            raise UserError(f"cannot read sprite {self.root / row.relpath}; rebuild the bank with `naturalize segment`")
        return a[:, :, 3] >= threshold

    def _source_rgb(self, source: str) -> np.ndarray:
        """RGB uint8 array of one source image (bank.json `root` + source; the last one read is kept)."""
        if self._source is not None and self._source[0] == source:
            return self._source[1]
        root = self.meta.get("root")
        path = Path(root) / source if root else Path(source)  # every bank segment writes records its root
        from naturalize.decode import load_image

        try:  # decoded as segment decoded it (naturalize.decode), so the mask lies on the same pixels
            rgb = load_image(path, None)
        except UserError as e:
            raise UserError(
                f"{e}: the source image of a rejected sprite of {self.root}; keep the PBC "
                f"folder the bank was cut from in place (bank.json `root`) or rebuild the bank with "
                f"`naturalize segment`"
            ) from None
        self._source = (source, rgb)
        return rgb

    def load_background(self, row: BackgroundRow) -> np.ndarray:
        """RGB uint8 array (H, W, 3) of one background plate."""
        with Image.open(self.root / row.relpath) as im:
            return np.asarray(im.convert("RGB"))


def encode_mask(mask: np.ndarray) -> str:
    """COCO RLE (pycocotools' compact counts string) of a mask (h, w; nonzero = inside); deterministic."""
    from pycocotools import mask as rle

    return rle.encode(np.asfortranarray(mask != 0, dtype=np.uint8))["counts"].decode("ascii")


def decode_mask(counts: str, h: int, w: int) -> np.ndarray:
    """Bool mask (h, w) of an `encode_mask` string."""
    from pycocotools import mask as rle

    return rle.decode({"size": [h, w], "counts": counts.encode("ascii")}).astype(bool)


def _read_dicts(text: str) -> list[dict[str, str]]:
    return [r for r in csv.DictReader(io.StringIO(text, newline="")) if None not in r.values()]


# ---------------------------------------------------------------- writing (naturalize segment)

CSV_FILES: tuple[str, ...] = ("index.csv", "backgrounds.csv", "curation.csv")
BANK_FILES: tuple[str, ...] = ("bank.json",) + CSV_FILES
KIND = "bank"  # the output marker's kind (naturalize.outputs)
#: How a bank made with other settings is replaced (the end of segment's error line; build names its own).
STALE_FIX = "pass --overwrite to replace it or choose another --out"
BANK_DIRS: tuple[str, ...] = ("sprites", "backgrounds")
#: Folders written beside them after a run (the QC page; scene caches made once per bank by compose).
DERIVED_DIRS: tuple[str, ...] = ("qc", "scenes")


@dataclass(frozen=True)
class EncodedSprite:
    """A sprite ready to store: `png` holds the RGBA tight crop (alpha = mask); a mask-only sprite (rejected by the
    quality gate) has png b"" and `mask`, the encode_mask string of its mask in the box."""

    kind: str
    png: bytes
    x0: int
    y0: int
    x1: int
    y1: int
    area: int
    score: float
    touches_border: bool
    quality: float = 1.0
    reason: str = PASS
    label: str | None = None  # None: the image's class for a WBC, "" otherwise
    mask: str = ""


@dataclass(frozen=True)
class ImageEntry:
    """Everything one source image adds to a bank (made by a worker, written by BankWriter.add)."""

    source: str
    label: str
    stem: str
    width: int
    height: int
    sprites: tuple[EncodedSprite, ...]
    background_png: bytes  # b"": no background plate (the image is unfit)
    n_wbc: int
    n_rbc: int
    n_plt: int
    flags: tuple[str, ...]
    keep: bool


def _csv_line(values: list) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue().encode("utf-8")


def _complete_lines(path: Path) -> list[str]:
    """Lines of a CSV file, without a trailing line an interrupted write cut short."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    return lines[:-1]  # the last piece is '' for a complete file, else a partial row


class BankWriter:
    """Append-only writer of a sprite bank; the bank is valid (Bank.open) after every `add`.

    Per source image: sprite PNGs and the background PNG are written atomically, then the index and
    background rows are appended, then the curation row: it is the commit marker. Reopening a bank
    with the same identity (backend, parameters, input) resumes it: rows of sources without a
    curation row are dropped and `done` lists the sources to skip.
    """

    def __init__(self, root: Path, identity: dict, done: set[str], counts: dict):
        self.root = root
        self.identity = identity
        self.done = done
        self._counts = counts
        self._dirs: set[Path] = set()
        self._files: dict[str, _FileSum] = {}

    # ------------------------------------------------------------ opening

    @staticmethod
    def check(root: str | Path, identity: dict, overwrite: bool, fix: str = STALE_FIX) -> str:
        """What opening `root` would do: 'new', 'resume' or 'overwrite'; raise UserError when it must not be touched
        (a non-empty folder without naturalize's bank marker, or a bank of other settings without overwrite: the
        error line ends with `fix`). Writes nothing."""
        root = Path(root)
        if claim(root, KIND, has_overwrite=True) == "new":
            return "new"
        if overwrite:
            return "overwrite"
        meta_path = root / "bank.json"
        meta = read_record(meta_path)
        if meta is None:  # missing, not JSON, or JSON but not an object
            raise UserError(f"{meta_path} is missing or damaged; rerun with --overwrite to rebuild the bank")
        theirs = {k: meta.get(k) for k in identity}
        if meta.get("format_version") != FORMAT_VERSION and theirs == identity:
            raise UserError(
                f"{root} holds a sprite bank of format version {meta.get('format_version')}, this naturalize writes "
                f"version {FORMAT_VERSION} and cannot resume an older one; {fix}"
            )
        if theirs != identity:
            diff = sorted(_differ(k, theirs.get(k), identity[k]) for k in identity if theirs.get(k) != identity[k])
            raise UserError(f"{root} holds a sprite bank made with other settings ({', '.join(diff)} differ); {fix}")
        return "resume"

    @classmethod
    def open(cls, root: str | Path, identity: dict, overwrite: bool = False) -> BankWriter:
        """Create, replace (overwrite=True) or resume the bank at `root`. `identity` (JSON-able dict with
        keys backend, parameters, input, ...) is stored in bank.json and must match to resume."""
        root = Path(root)
        mode = cls.check(root, identity, overwrite)
        if mode == "overwrite":
            remove_written(root, KIND)
        if mode in ("new", "overwrite"):
            write_marker(root, KIND, BANK_FILES + BANK_DIRS + DERIVED_DIRS)  # first: from here on the folder is ours
            writer = cls(root, identity, set(), _empty_counts())
            for name, header in zip(CSV_FILES, (INDEX_FIELDS, BACKGROUND_FIELDS, CURATION_FIELDS)):
                writer._start(name, _csv_line(header))
            writer._write_meta()
            return writer
        return cls._resume(root, identity)

    @classmethod
    def _resume(cls, root: Path, identity: dict) -> BankWriter:
        meta = read_bank_meta(root)
        for name in CSV_FILES:  # what bank.json vouches for must be intact; only a tail after it is redone
            _committed_text(root, name, file_record(meta, name))
        cur = _complete_lines(root / "curation.csv")
        done_rows = list(csv.DictReader(cur)) if cur else []
        done = {r["source"] for r in done_rows if None not in r.values()}
        kept: dict[str, list[dict]] = {}
        texts: dict[str, bytes] = {}
        for name, fields_ in (
            ("index.csv", INDEX_FIELDS),
            ("backgrounds.csv", BACKGROUND_FIELDS),
            ("curation.csv", CURATION_FIELDS),
        ):
            lines = _complete_lines(root / name)
            rows = [r for r in csv.DictReader(lines) if None not in r.values() and r["source"] in done] if lines else []
            kept[name] = rows
            text = _csv_line(fields_) + b"".join(_csv_line([r[f] for f in fields_]) for r in rows)
            texts[name] = text
            if not (root / name).exists() or (root / name).read_bytes() != text:
                write_bytes(root / name, text)
        # files of sources that never committed (and temp files of an interrupted write) go
        wanted = {s.relpath for s in (_coerce(SpriteRow, r) for r in kept["index.csv"]) if s.has_png}
        wanted |= {f"backgrounds/{r['background_id']}.png" for r in kept["backgrounds.csv"]}
        for sub in BANK_DIRS:
            for p in sorted((root / sub).rglob("*")) if (root / sub).is_dir() else []:
                if p.is_file() and p.relative_to(root).as_posix() not in wanted:
                    p.unlink()
        for p in root.glob(".*.tmp"):
            p.unlink()
        counts = _empty_counts()
        for r in kept["index.csv"]:
            _count_sprite(counts, r["kind"], r["label"], r["touches_border"] == "1", r.get("reason") or PASS)
        for r in kept["curation.csv"]:
            _count_source(counts, r["flags"].split(";") if r["flags"] else [], r["keep"] == "1")
        counts["backgrounds"] = len(kept["backgrounds.csv"])
        writer = cls(root, identity, done, counts)
        for name in CSV_FILES:
            writer._files[name] = _FileSum(texts[name])
        writer._write_meta()
        return writer

    # ------------------------------------------------------------ writing

    def add(self, entry: ImageEntry) -> list[SpriteRow]:
        """Store one source image's sprites, background and curation row (in that order)."""
        if entry.source in self.done:
            return []
        rows: list[SpriteRow] = []
        per_kind: dict[str, int] = {}
        for s in entry.sprites:
            k = per_kind.get(s.kind, 0)
            per_kind[s.kind] = k + 1
            label = s.label if s.label is not None else entry.label if s.kind == "WBC" else ""
            row = SpriteRow(
                f"{entry.stem}_{s.kind}_{k}",
                s.kind,
                label,
                entry.source,
                s.x0,
                s.y0,
                s.x1,
                s.y1,
                s.area,
                s.score,
                s.touches_border,
                s.quality,
                s.reason,
                s.mask,
            )
            if row.has_png:
                self._put(row.relpath, s.png)
            rows.append(row)
        bg = BackgroundRow(entry.stem, entry.source, entry.label, entry.width, entry.height)
        if entry.background_png:  # an image unfit for sprites (tiny, blank, noise) gives no plate either
            self._put(bg.relpath, entry.background_png)
        self._append("index.csv", b"".join(_csv_line(_sprite_values(r)) for r in rows))
        if entry.background_png:
            self._append("backgrounds.csv", _csv_line([bg.background_id, bg.source, bg.label, bg.width, bg.height]))
        self._append(
            "curation.csv",
            _csv_line(
                [
                    entry.source,
                    entry.label,
                    entry.n_wbc,
                    entry.n_rbc,
                    entry.n_plt,
                    ";".join(entry.flags),
                    int(entry.keep),
                ]
            ),
        )
        self.done.add(entry.source)
        for r in rows:
            _count_sprite(self._counts, r.kind, r.label, r.touches_border, r.reason)
        _count_source(self._counts, list(entry.flags), entry.keep)
        self._counts["backgrounds"] += int(bool(entry.background_png))
        self._write_meta()
        return rows

    def _put(self, relpath: str, data: bytes) -> None:
        """Atomic write (temp file beside the target, then rename) of one bank file; a leftover temp file of a
        killed run is removed on resume."""
        path = self.root / relpath
        if path.parent not in self._dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(path.parent)
        replace_bytes(path, data)

    def _start(self, name: str, header: bytes) -> None:
        """Write a bank CSV holding only its header."""
        write_bytes(self.root / name, header)
        self._files[name] = _FileSum(header)

    def _append(self, name: str, data: bytes) -> None:
        """Append whole rows with one write() on an O_APPEND descriptor (a killed process leaves whole rows)."""
        if not data:
            return
        self._files[name].add(data)
        fd = os.open(self.root / name, os.O_WRONLY | os.O_APPEND)
        try:
            write_all(fd, data)
        finally:
            os.close(fd)

    @property
    def counts(self) -> dict:
        return json.loads(json.dumps(self._counts))

    def _write_meta(self) -> None:
        meta = {
            "format_version": FORMAT_VERSION,
            **self.identity,
            "counts": self._counts,
            "files": {name: f.record() for name, f in self._files.items()},
        }
        self._put("bank.json", (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode("utf-8"))


class _FileSum:
    """Bytes, rows and running SHA-256 of one append-only bank CSV (what bank.json records of it)."""

    def __init__(self, data: bytes):
        self.bytes, self.rows, self.sha = 0, -1, hashlib.sha256()  # the header line is not a row
        self.add(data)

    def add(self, data: bytes) -> None:
        self.bytes += len(data)
        self.rows += data.count(b"\n")
        self.sha.update(data)

    def record(self) -> dict:
        return {"bytes": self.bytes, "rows": self.rows, "sha256": self.sha.hexdigest()}


def _differ(key: str, theirs: Any, ours: Any) -> str:
    """`key`, with the sub-keys that differ when both values are dicts: "parameters (checkpoint_md5)"; `code` says
    that another version of the segmentation code cut the bank (or one from before banks recorded it)."""
    if key == "code":
        return "code (cut by another version of naturalize's segmentation code)"
    if not (isinstance(theirs, dict) and isinstance(ours, dict)):
        return key
    subs = sorted(k for k in theirs.keys() | ours.keys() if theirs.get(k) != ours.get(k))
    return f"{key} ({', '.join(subs)})"


def _empty_counts() -> dict:
    return {
        "sources": 0,
        "kept": 0,
        "backgrounds": 0,
        "flags": {},
        "sprites": {k: 0 for k in KINDS},
        "usable": {k: 0 for k in KINDS},
        "wbc_by_class": {},
        "gate": {k: {} for k in KINDS},
    }


def _count_sprite(counts: dict, kind: str, label: str, border: bool, reason: str = PASS) -> None:
    """Count one stored sprite: per kind, per gate reason ("gate": kind -> reason -> n; "ok" = kept), and
    as usable (kept, whole) per kind and WBC class."""
    counts["sprites"][kind] = counts["sprites"].get(kind, 0) + 1
    gate = counts.setdefault("gate", {}).setdefault(kind, {})
    gate[reason] = gate.get(reason, 0) + 1
    if not border and reason == PASS:
        counts["usable"][kind] = counts["usable"].get(kind, 0) + 1
        if kind == "WBC" and label:
            counts["wbc_by_class"][label] = counts["wbc_by_class"].get(label, 0) + 1


def _count_source(counts: dict, flags: list[str], keep: bool) -> None:
    counts["sources"] += 1
    counts["kept"] += int(keep)
    for f in flags:
        counts["flags"][f] = counts["flags"].get(f, 0) + 1


def _sprite_values(r: SpriteRow) -> list:
    return [
        r.sprite_id,
        r.kind,
        r.label,
        r.source,
        r.x0,
        r.y0,
        r.x1,
        r.y1,
        r.area,
        f"{r.score:.4f}",
        int(r.touches_border),
        f"{r.quality:.4f}",
        r.reason,
        r.mask,
    ]
