"""Writing a sprite bank (`naturalize segment`): BankWriter creates, replaces or resumes one, then adds source
images one at a time, each committed by its curation row; the bank is valid (Bank.open) after every add.

In: a bank folder, the run's identity (backend, parameters, input), ImageEntry per source image. Out: the bank's
files (naturalize/bank/files.py) and bank.json with counts and the record of each CSV (naturalize/bank/stamps.py).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from naturalize.bank.files import (
    BACKGROUND_FIELDS,
    BANK_DIRS,
    BANK_FILES,
    CSV_FILES,
    CURATION_FIELDS,
    DERIVED_DIRS,
    FORMAT_VERSION,
    INDEX_FIELDS,
    KINDS,
    PASS,
    BackgroundRow,
    SpriteRow,
    coerce_row,
    csv_line,
    source_stem,
    sprite_values,
    written_by_segment,
)
from naturalize.bank.stamps import FileSum, committed_text, file_record, read_bank_meta
from naturalize.fsio import UserError, remove_atomic_temps, replace_bytes, temp_target, write_all, write_bytes
from naturalize.outputs import MARKER, claim, not_owned, read_record, refuse_foreign, remove_written, write_marker

KIND = "bank"  # the output marker's kind (naturalize.outputs)
#: How a bank made with other settings is replaced (the end of segment's error line; build names its own).
STALE_FIX = "pass --overwrite to replace it or choose another --out"


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
    mask_counts: Mapping[str, Any] = field(default_factory=dict)  # what the backend dropped before the gate (SAM)


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
        self._files: dict[str, FileSum] = {}
        self.left: list[Path] = []  # files in the bank's folders that a resume left: not written by segment

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
            refuse_foreign(not_owned(root, BANK_DIRS + DERIVED_DIRS, written_by_segment), root, "naturalize segment")
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
    def open(
        cls, root: str | Path, identity: dict, overwrite: bool = False, stems: Collection[str] | None = None
    ) -> BankWriter:
        """Create, replace (overwrite=True) or resume the bank at `root`. `identity` (JSON-able dict with
        keys backend, parameters, input, ...) is stored in bank.json and must match to resume. `stems`: the id stems
        of the run's source images, when known: a resume then removes only sprite and background files cut from
        them (others, and any file segment does not write, stay and are listed in `left`). --overwrite refuses a bank
        whose folders hold a file segment did not write (UserError naming it; nothing removed)."""
        root = Path(root)
        mode = cls.check(root, identity, overwrite)
        if mode == "overwrite":
            remove_written(root, KIND, owned=written_by_segment)
        if mode in ("new", "overwrite"):
            write_marker(root, KIND, BANK_FILES + BANK_DIRS + DERIVED_DIRS)  # first: from here on the folder is ours
            writer = cls(root, identity, set(), _empty_counts())
            for name, header in zip(CSV_FILES, (INDEX_FIELDS, BACKGROUND_FIELDS, CURATION_FIELDS)):
                writer._start(name, csv_line(header))
            writer._write_meta()
            return writer
        return cls._resume(root, identity, stems)

    @classmethod
    def _resume(cls, root: Path, identity: dict, stems: Collection[str] | None = None) -> BankWriter:
        meta = read_bank_meta(root)
        for name in CSV_FILES:  # what bank.json vouches for must be intact; only a tail after it is redone
            committed_text(root, name, file_record(meta, name))
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
            text = csv_line(fields_) + b"".join(csv_line([r[f] for f in fields_]) for r in rows)
            texts[name] = text
            if not (root / name).exists() or (root / name).read_bytes() != text:
                write_bytes(root / name, text)
        # files of sources that never committed (and temp files of an interrupted write) go; only those
        wanted = {s.relpath for s in (coerce_row(SpriteRow, r) for r in kept["index.csv"]) if s.has_png}
        wanted |= {f"backgrounds/{r['background_id']}.png" for r in kept["backgrounds.csv"]}

        def ours(rel: str) -> bool:
            stem = source_stem(rel)
            return written_by_segment(rel) and (stems is None or stem is None or stem in stems)

        left = []  # a user's file or link: stays
        for p in not_owned(root, BANK_DIRS, lambda rel: False):  # every file and link, links never followed
            rel = p.relative_to(root).as_posix()
            if p.is_symlink() or not ours(rel):
                left.append(p)
            elif rel not in wanted:
                p.unlink()
        remove_atomic_temps(root, (*BANK_FILES, MARKER))  # the bank's own: a user's other .*.tmp stays
        for p in root.glob(".bank.json.*.tmp"):  # bank.json is written by replace_bytes (a pid, not 8 characters)
            if temp_target(p.name) == "bank.json" and p.is_file() and not p.is_symlink():
                p.unlink()
        counts = _empty_counts()
        for r in kept["index.csv"]:
            _count_sprite(counts, r["kind"], r["label"], r["touches_border"] == "1", r.get("reason") or PASS)
        for r in kept["curation.csv"]:
            _count_source(counts, r["flags"].split(";") if r["flags"] else [], r["keep"] == "1")
        counts["backgrounds"] = len(kept["backgrounds.csv"])
        if isinstance(meta.get("counts", {}).get("masks"), dict):  # not in the CSVs: the images bank.json counted
            counts["masks"] = meta["counts"]["masks"]
        writer = cls(root, identity, done, counts)
        writer.left = left
        for name in CSV_FILES:
            writer._files[name] = FileSum(texts[name])
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
        self._append("index.csv", b"".join(csv_line(sprite_values(r)) for r in rows))
        if entry.background_png:
            self._append("backgrounds.csv", csv_line([bg.background_id, bg.source, bg.label, bg.width, bg.height]))
        self._append(
            "curation.csv",
            csv_line(
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
        if entry.mask_counts:
            _count_masks(self._counts.setdefault("masks", {"images": 0}), {"images": 1, **entry.mask_counts})
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
        self._files[name] = FileSum(header)

    def _append(self, name: str, data: bytes) -> None:
        """Append whole rows with one write() on an O_APPEND descriptor (a killed process leaves whole rows)."""
        if not data:
            return
        self._files[name].add(data)
        fd = os.open(self.root / name, os.O_WRONLY | os.O_APPEND)
        try:
            write_all(fd, data, self.root / name)
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


def _count_masks(total: dict, part: Mapping[str, Any]) -> None:
    """Add one image's mask counts (numbers, nested dicts of them) to the bank's counts.masks, key by key."""
    for k, v in part.items():
        if isinstance(v, Mapping):
            _count_masks(total.setdefault(k, {}), v)
        else:
            total[k] = total.get(k, 0) + v
