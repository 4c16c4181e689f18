"""Where things live: paths from environment variables (an empty variable counts as unset), the dataset home,
which file names are images, and derived names that fit the file system."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path

#: Dataset names (`classify --dataset NAME`, `naturalize build`'s default --out) resolve under this folder.
DATA_ENV = "NATURALIZE_DATA"

#: File suffixes read as images (lower case), by the dataset readers and the preview.
IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


def env_path(name: str, default: str | os.PathLike) -> Path:
    """$name as a path when set and non-empty, else `default`."""
    value = os.environ.get(name)
    return Path(value) if value else Path(default)


def data_home() -> Path:
    """Where datasets live: $NATURALIZE_DATA, else ./datasets."""
    return env_path(DATA_ENV, "datasets")


def subdirs(path: Path) -> list[Path]:
    """The visible (not dot-named) folders directly in `path`, sorted by name."""
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def visible_files(folder: Path, dotted: list[Path] | None = None) -> list[Path]:
    """Every non-folder entry anywhere below `folder` (dangling symlinks included), sorted, leaving out hidden
    (dot-named) files and everything in hidden folders. Symlinked folders are followed (a class folder that is a
    link is read, as `naturalize prepare` and classify's dataset readers read it), each real folder once. The
    dot-named files left out of the folders searched are added to `dotted` when given (for hidden_note; not what
    hidden folders such as .git/ hold)."""
    found: list[Path] = []
    seen: set[str] = set()
    for top, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:  # a link back up the tree, or a second link to one folder
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(top) / f for f in files if not f.startswith(".")]
        if dotted is not None:
            dotted += [Path(top) / f for f in files if f.startswith(".")]
    return sorted(found)


#: The longest file name (bytes) common file systems take (ext4, APFS, NTFS in UTF-16 units).
NAME_MAX = 255


def fit_name(name: str, limit: int = NAME_MAX) -> str:
    """`name` when it takes at most `limit` bytes (UTF-8), else its start, '~', 8 hex digits of its sha1 and its
    suffix, within `limit`: a derived name (`<stem>_scorecam.png`, a temp file) of a long input name still fits."""
    data = name.encode()
    if len(data) <= limit:
        return name
    suffix = Path(name).suffix if len(Path(name).suffix.encode()) <= 16 else ""
    tail = f"~{hashlib.sha1(data).hexdigest()[:8]}{suffix}"
    head = name[: len(name) - len(suffix)]
    while len(head.encode()) + len(tail.encode()) > limit:
        head = head[:-1]
    return head + tail


def fit_shortened(name: str, suffix: str) -> bool:
    """Whether `name` has the form fit_name gives a name it shortened (start, '~', 8 hex digits, `suffix`)."""
    return re.fullmatch(rf".+~[0-9a-f]{{8}}{re.escape(suffix)}", name) is not None


#: Files an operating system leaves in folders that are not dot-named (Windows Explorer's thumbnail caches and
#: folder settings); with the dot-files (macOS .DS_Store and ._* AppleDouble copies, editors' leftovers) they are
#: "hidden": never an image of a class, read by no command.
SYSTEM_NAMES = frozenset({"thumbs.db", "ehthumbs.db", "desktop.ini"})


def is_hidden_name(path: str | os.PathLike) -> bool:
    """True for a dot-named file (.DS_Store, ._X.jpg, .X.jpg) or an OS leftover of SYSTEM_NAMES (any case)."""
    name = Path(path).name
    return name.startswith(".") or name.lower() in SYSTEM_NAMES


def hidden_note(paths: Sequence[str | os.PathLike]) -> str | None:
    """One line counting the hidden files a command skipped, with the first as an example; None when none."""
    if not paths:
        return None
    return (
        f"note: skipped {len(paths)} hidden or system file(s) (dot-files such as .DS_Store or ._* AppleDouble "
        f"copies, Thumbs.db), e.g. {paths[0]}; no command reads them"
    )


def is_image_name(path: str | os.PathLike) -> bool:
    """True when the file name has an image suffix (any case)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def is_composite_name(path: str | os.PathLike) -> bool:
    """True when the file name is a Naturalize composite's (`<CLASS>_syn_<seed>_<i>.<fmt>`: `_syn_` in it)."""
    return "_syn_" in Path(path).name
