"""The sprite bank's files: their names, the columns of its CSVs and the row types (one job: the format).

In: nothing. Out: FORMAT_VERSION and the versions read, the file and folder names a bank holds, the CSV columns,
SpriteRow / BackgroundRow and the conversions of a CSV row to and from them (`coerce_row`, `csv_line`,
`sprite_values`). The package's docstring (naturalize/bank/__init__.py) lays the files out.
"""

from __future__ import annotations

import csv
import functools
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from naturalize.fsio import TEMP_STEM, temp_target
from naturalize.paths import fit_shortened

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


CSV_FILES: tuple[str, ...] = ("index.csv", "backgrounds.csv", "curation.csv")
BANK_FILES: tuple[str, ...] = ("bank.json",) + CSV_FILES
BANK_DIRS: tuple[str, ...] = ("sprites", "backgrounds")
#: Folders written beside them after a run (the QC page; scene caches made once per bank by compose).
DERIVED_DIRS: tuple[str, ...] = ("qc", "scenes")
#: The files of the QC page (naturalize/segment/qc.py) in BANK/qc/.
QC_FILES: tuple[str, ...] = ("sprites.png", "sources.png", "index.html")
#: The files compose caches in BANK/scenes/ (naturalize/compose: scene_stats, scenes, source_cache), relative to it.
SCENE_FILES = re.compile(
    r"focus\.json|matched/[^/]+\.json|matched/sources/[^/]+\.(json|[0-9a-f]{16}\.npy)"
    r"|transplant/[^/]+\.(json|npy|png)"
)
_SPRITE_NAME = re.compile(r"(.+)_(RBC|WBC|PLT)_\d+\.png")


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


def _shortened(name: str) -> bool:
    """Whether `name` is a name over TEMP_STEM bytes as fit_name shortened it for a temporary file."""
    return len(name.encode()) >= TEMP_STEM - 3 and fit_shortened(name, ".png")


def written_by_segment(rel: str) -> bool:
    """Whether `rel`, a file's path inside a bank ('sprites/WBC/LY/x_WBC_0.png'), is one segment or compose writes
    in the bank's folders, or the temporary file of one: sprites/<kind>/[<label>/]<stem>_<kind>_<n>.png,
    backgrounds/<id>.png, the QC page (QC_FILES) and compose's caches (SCENE_FILES). A user's file put there is
    not (resume leaves it, --overwrite refuses it)."""
    *head, name = rel.split("/")
    target = temp_target(name)
    temp = target is not None
    name = target if target is not None else name
    if len(head) in (2, 3) and head[0] == "sprites" and head[1] in KINDS:
        m = _SPRITE_NAME.fullmatch(name)
        return (m is not None and m[2] == head[1]) or (temp and _shortened(name))
    if head == ["backgrounds"]:
        return len(name) > len(".png") and name.endswith(".png")
    if head == ["qc"]:
        return name in QC_FILES
    if head and head[0] == "scenes":
        return SCENE_FILES.fullmatch("/".join([*head[1:], name])) is not None
    return False


def source_stem(rel: str) -> str | None:
    """The id stem of the source image a bank file ('sprites/WBC/LY/<stem>_WBC_0.png', 'backgrounds/<stem>.png', or
    the temporary file of one) was cut from; None for any other file (or a temporary name fit_name shortened)."""
    *head, name = rel.split("/")
    target = temp_target(name)
    if target is not None and _shortened(target):
        return None
    name = target or name
    if head[:1] == ["sprites"] and (m := _SPRITE_NAME.fullmatch(name)):
        return m[1]
    if head == ["backgrounds"] and name.endswith(".png"):
        return name[: -len(".png")]
    return None


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


def coerce_row(cls, row: dict[str, str]):
    """A CSV row (column -> text; missing or None columns take the field's default) as a `cls` row object."""
    return cls(**{name: conv(row[name]) for name, conv in _converters(cls) if row.get(name) is not None})


def csv_line(values: list) -> bytes:
    """One CSV line (UTF-8, \\n-terminated) of `values`."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue().encode("utf-8")


def sprite_values(r: SpriteRow) -> list:
    """The index.csv values of a sprite row (INDEX_FIELDS order)."""
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
