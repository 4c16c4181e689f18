"""Read a PBC tree into one labelled record per image, applying the dataset's rules.

Three layouts are detected automatically:
    release  the public download: PBC_dataset_normal_DIB/<8 folders>/, fine class = file-name prefix
    classes  one folder per fine class: <ROOT>/<CLASS>/
    split    <ROOT>/{train,val,test}/<CLASS>/ (the split is kept)

Rules (each counted in the scan's summary): unlabeled IG_/NEUTROPHIL_ files are dropped; files that
are not images are skipped; empty, truncated or corrupt images are listed with the reason; duplicates
(same bytes, or the same picture re-saved in other bytes: naturalize.neardup) keep one copy within a class and
are all dropped across classes.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from naturalize.classes import (
    CLASSES,
    PREFIX_TO_CLASS,
    RELEASE_DIRNAME,
    RELEASE_FOLDERS,
    SPLITS,
    UNLABELED_PREFIXES,
    class_of_prefix,
)
from naturalize.fsio import UserError, atomic_open, read_object
from naturalize.neardup import same_picture_pairs, thumbnail
from naturalize.paths import IMAGE_SUFFIXES, hidden_note, is_hidden_name, is_image_name, subdirs
from naturalize.procs import die_with_parent, pool_context, started, watched

RECORD_COLUMNS = ["path", "class", "folder", "sha256", "width", "height", "mode", "split", "excluded"]
DROPPED_COLUMNS = ["path", "reason", "detail"]


@dataclass(frozen=True)
class Record:
    """One usable image. `path` is relative to the scanned root (POSIX separators)."""

    path: str
    cls: str
    folder: str
    sha256: str
    width: int
    height: int
    mode: str
    split: str = ""
    excluded: str = ""


#: Why a hidden file (dot-named, or an OS leftover such as Thumbs.db: paths.is_hidden_name) is left out unread.
HIDDEN_DETAIL = "hidden or system file (leading dot, Thumbs.db ...), read by no command; rename it to use it"


@dataclass(frozen=True)
class Dropped:
    """A file left out, with a reason: unlabeled, unknown_prefix, non_image, empty, unreadable, hidden (a dot-named
    file or an OS leftover, not read), duplicate, near_duplicate (the same picture in other bytes) or
    duplicate_conflict."""

    path: str
    reason: str
    detail: str = ""


@dataclass
class Scan:
    """The result of reading a tree: kept records, dropped files and what was ignored."""

    root: Path
    layout: str
    records: list[Record]
    dropped: list[Dropped]
    empty_folders: list[str]
    ignored: list[str]


# ---------------------------------------------------------------- layout


def _class_of_folder(name: str) -> str | None:
    """Folder 'pmy' or 'PMY' -> 'PMY'; release folder names such as 'platelet' are not class folders."""
    return name.upper() if name.upper() in CLASSES else None


def detect_layout(root: Path) -> tuple[str, Path]:
    """Return (layout, data root) for a PBC tree; raise UserError when none fits."""
    if not root.exists():
        raise UserError(f"{root} does not exist; point to your PBC download (the folder holding {RELEASE_DIRNAME}/)")
    if not root.is_dir():
        raise UserError(f"{root} is not a folder; point to your PBC download (the folder holding {RELEASE_DIRNAME}/)")
    if (root / RELEASE_DIRNAME).is_dir():
        root = root / RELEASE_DIRNAME
    names = {p.name for p in subdirs(root)}
    if names & set(SPLITS):
        others = sorted(n for n in names - set(SPLITS) if _class_of_folder(n) or n.lower() in RELEASE_FOLDERS)
        if others:
            raise UserError(
                f"{root} mixes layouts: split folders ({', '.join(sorted(names & set(SPLITS)))}) beside "
                f"class or release folders ({', '.join(others)}); move one kind elsewhere so the "
                f"folder holds one layout"
            )
        return "split", root
    if any(_class_of_folder(n) for n in names):
        return "classes", root
    if {n.lower() for n in names} & set(RELEASE_FOLDERS):
        return "release", root
    raise UserError(
        f"{root} has no PBC layout: expected the release's folders ({', '.join(RELEASE_FOLDERS)}), "
        f"one folder per class ({', '.join(CLASSES)}) or train/val/test/<CLASS>/; point to the folder that holds them"
    )


def unread_note(root: str | Path, ignored: Sequence[str]) -> str | None:
    """One line naming the folders and image files of a scan's `ignored` paths (relative to `root`), whose images
    were not read, with the fix; None when there is none (loose non-image files, such as a README, go unnamed)."""
    lost = [p for p in ignored if is_image_name(p) or (Path(root) / p).is_dir()]
    if not lost:
        return None
    return (
        f"note: not read (neither a PBC class folder nor a release folder): {', '.join(lost)}; "
        "rename a folder to its class or release name (e.g. neutrophil, PMY) to include its images"
    )


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file())


def _candidates(
    layout: str, data_root: Path, root: Path
) -> tuple[list[tuple[Path, str, str, str]], list[str], list[str]]:
    """List (file, class, folder, split) for every file to read, plus empty folders and ignored paths.

    In the release layout the class is '' here: it comes from the file-name prefix.
    """
    items: list[tuple[Path, str, str, str]] = []
    empty: list[str] = []
    ignored: list[str] = []
    rel = lambda p: p.relative_to(root).as_posix()  # noqa: E731

    def class_folders(base: Path, split: str) -> None:
        for d in subdirs(base):
            cls = _class_of_folder(d.name)
            if cls is None:
                ignored.append(rel(d))
                continue
            files = _files(d)
            if not files:
                empty.append(rel(d))
            items.extend((f, cls, d.name, split) for f in files)

    if layout == "release":
        for d in subdirs(data_root):
            if d.name.lower() not in RELEASE_FOLDERS:
                ignored.append(rel(d))
                continue
            files = _files(d)
            if not files:
                empty.append(rel(d))
            items.extend((f, "", d.name, "") for f in files)
    elif layout == "classes":
        class_folders(data_root, "")
    else:
        for d in subdirs(data_root):
            if d.name in SPLITS:
                class_folders(d, d.name)
            else:
                ignored.append(rel(d))
    ignored.extend(rel(f) for f in _files(data_root) if not f.name.startswith("."))
    return items, empty, ignored


# ---------------------------------------------------------------- reading one file


def read_image_info(path: str) -> tuple[str, int, int, str] | tuple[str, str]:
    """Hash and fully decode one file. Returns (sha256, width, height, mode), or (reason, detail) on failure."""
    return _read_image(path)[0]


def _read_image(path: str) -> tuple[tuple[str, int, int, str] | tuple[str, str], bytes | None]:
    """`read_image_info` of one file, with the image's thumbnail (naturalize.neardup; None when it has none)."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        return ("unreadable", f"cannot read: {e.strerror}"), None
    if not data:
        return ("empty", "zero-byte file"), None
    digest = hashlib.sha256(data).hexdigest()
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height, mode = im.width, im.height, im.mode
            if im.format == "JPEG":  # decode at 1/8 scale: every byte is still parsed, so truncation shows
                im.draft(None, (max(1, width // 8), max(1, height // 8)))
            im.load()
            try:
                thumb: bytes | None = thumbnail(im)
            except (OSError, ValueError):  # a mode with no grey conversion: no same-picture check for it
                thumb = None
    except UnidentifiedImageError:
        return ("non_image", "not an image file"), None
    except Image.DecompressionBombError as e:  # not an OSError: it would end the scan with a traceback
        return ("unreadable", f"too large to decode ({e}); crop or downscale it to a cell crop"), None
    except (OSError, SyntaxError, ValueError) as e:
        return ("unreadable", f"corrupt or truncated image: {e}"), None
    return (digest, width, height, mode), thumb


def _label_from_prefix(name: str) -> tuple[str | None, str]:
    prefix = name.split("_", 1)[0].upper()
    if prefix in UNLABELED_PREFIXES:
        return None, "unlabeled"
    cls = class_of_prefix(name)
    return (cls, "") if cls else (None, "unknown_prefix")


# ---------------------------------------------------------------- scan


def scan(root: str | Path, workers: int = 2, progress: bool = True) -> Scan:
    """Read every file under a PBC tree and return the labelled, de-duplicated records."""
    root = Path(root)
    layout, data_root = detect_layout(root)
    items, empty, ignored = _candidates(layout, data_root, root)
    dropped: list[Dropped] = []
    to_read: list[tuple[Path, str, str, str]] = []
    for f, cls, folder, split in items:
        if is_hidden_name(f):  # .DS_Store, ._X.jpg, Thumbs.db: no command reads them, so neither is this one read
            dropped.append(Dropped(f.relative_to(root).as_posix(), "hidden", HIDDEN_DETAIL))
            continue
        if layout == "release":
            label, reason = _label_from_prefix(f.name)
            if label is None and reason == "unlabeled":
                dropped.append(Dropped(f.relative_to(root).as_posix(), "unlabeled", f.name.split("_", 1)[0].upper()))
                continue
            # unknown prefixes are read first: a non-image (e.g. .DS_Store) is reported as such
            cls = label or ""
        if not is_image_name(f):  # classify, preview and realism read only these names: never split in one of them
            kinds = "/".join(sorted(IMAGE_SUFFIXES))
            why = f"not an image file name ({f.suffix or 'no suffix'}; read: {kinds}); convert it to use it"
            dropped.append(Dropped(f.relative_to(root).as_posix(), "non_image", why))
            continue
        to_read.append((f, cls, folder, split))

    paths = [str(f) for f, *_ in to_read]
    bar = dict(total=len(paths), desc="reading images", unit="img", disable=not progress, leave=False)
    if workers > 1 and len(paths) > 256:
        pool, procs = started(lambda: pool_context().Pool(workers, die_with_parent))
        with pool:
            infos = list(tqdm(watched(pool, procs, _read_image, paths, 64), **bar))
    else:
        infos = [_read_image(p) for p in tqdm(paths, **bar)]

    records: list[Record] = []
    thumbs: list[bytes | None] = []
    for (f, cls, folder, split), (info, thumb) in zip(to_read, infos):
        relpath = f.relative_to(root).as_posix()
        if len(info) == 2:
            dropped.append(Dropped(relpath, info[0], info[1]))
        elif not cls:
            dropped.append(
                Dropped(
                    relpath,
                    "unknown_prefix",
                    f"prefix {f.name.split('_', 1)[0]!r} is not one of {', '.join(PREFIX_TO_CLASS)}",
                )
            )
        else:
            sha, w, h, mode = info
            records.append(Record(relpath, cls, folder, sha, w, h, mode, split))
            thumbs.append(thumb)
    records, dup_dropped = drop_duplicates(records, same_picture_pairs(thumbs))
    return Scan(
        root.resolve(), layout, records, sorted(dropped + dup_dropped, key=lambda d: d.path), empty, sorted(ignored)
    )


def drop_duplicates(
    records: Sequence[Record], same_picture: Iterable[tuple[int, int]] = ()
) -> tuple[list[Record], list[Dropped]]:
    """Copies of one picture: the same bytes, or other bytes holding the same picture (`same_picture`: index pairs
    of `records`, e.g. a JPEG re-saved as PNG; naturalize.neardup). Within one class: keep one (earliest split, then
    path), drop the others (`duplicate`, `near_duplicate`). Across classes: drop every copy (`duplicate_conflict`)."""
    import numpy as np
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    first: dict[str, int] = {}
    edges = [(i, first.setdefault(r.sha256, i)) for i, r in enumerate(records)] + list(same_picture)
    rows, cols = np.array(edges, dtype=np.int64).reshape(-1, 2).T
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(records), len(records)))
    labels = connected_components(graph, directed=False)[1]
    groups: dict[int, list[Record]] = defaultdict(list)  # in the order of each group's first record
    for label, r in zip(labels.tolist(), records):
        groups[label].append(r)
    split_rank = {s: i for i, s in enumerate(("",) + SPLITS)}
    kept: list[Record] = []
    dropped: list[Dropped] = []

    def alike(r: Record, others: Sequence[Record]) -> str:
        return "same bytes as" if all(o.sha256 == r.sha256 for o in others) else "same picture (other bytes) as"

    for group in groups.values():
        group.sort(key=lambda r: (split_rank.get(r.split, 9), r.path))
        classes = {r.cls for r in group}
        if len(classes) > 1:
            for r in group:
                others = [o for o in group if o is not r]
                names = ", ".join(f"{o.path} ({o.cls})" for o in others)
                dropped.append(Dropped(r.path, "duplicate_conflict", f"{alike(r, others)} {names}"))
        else:
            kept.append(group[0])
            dropped.extend(
                Dropped(
                    r.path,
                    "duplicate" if r.sha256 == group[0].sha256 else "near_duplicate",
                    f"{alike(r, [group[0]])} {group[0].path}",
                )
                for r in group[1:]
            )
    return sorted(kept, key=lambda r: r.path), dropped


# ---------------------------------------------------------------- CSV I/O


def write_records(path: str | Path, records: Iterable[Record]) -> None:
    """Write records.csv atomically (columns RECORD_COLUMNS)."""
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(RECORD_COLUMNS)
        for r in records:
            w.writerow([r.path, r.cls, r.folder, r.sha256, r.width, r.height, r.mode, r.split, r.excluded])


def read_records(path: str | Path) -> list[Record]:
    """Read records.csv written by write_records."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != RECORD_COLUMNS:
            raise UserError(
                f"{path} is not a naturalize records file (columns {reader.fieldnames}); rerun `naturalize prepare`"
            )
        return [
            Record(
                r["path"],
                r["class"],
                r["folder"],
                r["sha256"],
                int(r["width"]),
                int(r["height"]),
                r["mode"],
                r["split"],
                r["excluded"],
            )
            for r in reader
        ]


def write_dropped(path: str | Path, dropped: Iterable[Dropped]) -> None:
    """Write dropped.csv atomically (columns DROPPED_COLUMNS)."""
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(DROPPED_COLUMNS)
        w.writerows([d.path, d.reason, d.detail] for d in dropped)


# ---------------------------------------------------------------- sources for later stages


def is_prepared(path: str | Path) -> bool:
    """True when `path` is a `naturalize prepare` output directory."""
    return (Path(path) / "records.csv").is_file() and (Path(path) / "summary.json").is_file()


def read_summary(path: str | Path, fix: str = "rerun `naturalize prepare` into it with --overwrite") -> dict:
    """summary.json of the prepared directory `path`; UserError (ending with `fix`) when it is not JSON or holds no
    PBC root."""
    summary_path = Path(path) / "summary.json"
    summary = read_object(summary_path, fix)
    if not isinstance(summary.get("root"), str):
        raise UserError(f"{summary_path} is not a naturalize prepare summary (no PBC root); {fix}")
    return summary


def load_sources(
    path: str | Path,
    split: str | None = None,
    classes: Sequence[str] = (),
    workers: int = 2,
    echo: Callable[[str], None] | None = None,
    progress: bool = True,
) -> tuple[Path, list[Record]]:
    """Raw PBC tree or prepared dir -> (root that record paths are relative to, non-excluded records).

    `split` keeps one split (a prepared dir or a train/val/test tree); `classes` keeps some classes.
    Damaged images of a raw tree are skipped and, with `echo`, each is reported in one pass; `progress`
    shows the bar of reading a raw tree.
    """
    path = Path(path)
    if is_prepared(path):
        root = Path(read_summary(path)["root"])
        if not root.is_dir():
            raise UserError(
                f"{path}/summary.json points to {root}, which is gone; rerun `naturalize prepare` on the PBC tree"
            )
        records = [r for r in read_records(path / "records.csv") if not r.excluded]
    else:
        result = scan(path, workers=workers, progress=progress)
        root, records = result.root, result.records
        bad = [d for d in result.dropped if d.reason in ("unreadable", "empty")]
        if bad and echo is not None:
            echo(
                f"skipped {len(bad)} unreadable image(s): "
                + "; ".join(f"{d.path} ({d.detail or d.reason})" for d in bad)
            )
        if echo is not None and (note := unread_note(root, result.ignored)):
            echo(note)
        if echo is not None and (note := hidden_note([d.path for d in result.dropped if d.reason == "hidden"])):
            echo(note)
        if split and result.layout != "split":
            raise UserError(
                f"--split {split} needs a prepared directory or a train/val/test tree, and {path} is a "
                f"{result.layout} tree; run `naturalize prepare {path} --out DIR` and pass DIR"
            )
    if split:
        if split not in SPLITS:
            raise UserError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        records = [r for r in records if r.split == split]
    if classes:
        missing = [c for c in classes if not any(r.cls == c for r in records)]
        if missing:
            raise UserError(
                f"no source images of class {', '.join(missing)} in {path}"
                + (f" ({split} split)" if split else "")
                + "; drop it from --classes"
            )
        records = [r for r in records if r.cls in set(classes)]
    if not records:
        raise UserError(f"no usable images in {path}" + (f" ({split} split)" if split else ""))
    return root, records


def with_split(records: Sequence[Record], splits: Sequence[str]) -> list[Record]:
    """Copies of `records` with their split set."""
    return [replace(r, split=s) for r, s in zip(records, splits)]
