"""Find a dataset tree and list its labelled images per split.

A dataset is either a split tree `ROOT/{train,val,test}/<CLASS>/*.jpg` or a plain class tree
`ROOT/<CLASS>/*.jpg`; a plain tree is split 80/10/10 (stratified, seeded) by naturalize's splitter, the one
`naturalize prepare` uses.
Names resolve under `$NATURALIZE_DATA` (else `./datasets`); an existing path is used as is.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from naturalize.classes import CLASSES, SPLITS
from naturalize.fsio import UserError, read_object
from naturalize.paths import (
    IMAGE_SUFFIXES,
    data_home,
    hidden_note,
    is_hidden_name,
    is_image_name,
    subdirs,
    visible_files,
)
from naturalize.prepare import MIN_PER_CLASS, stratified_split

PLAIN_FRACTIONS = (0.8, 0.1, 0.1)  # train, val, test of a plain class tree
WHOLE = "all"  # the split name of every image of a dataset (load_dataset(whole=True))


@dataclass
class Dataset:
    """A resolved dataset: its root, class order, layout and (relative path, label index) per split."""

    root: Path
    classes: tuple[str, ...]
    layout: str  # "split" or "plain"
    items: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)  # ROOT/dataset.json when present

    @property
    def name(self) -> str:
        return self.root.name

    def paths(self, split: str) -> list[Path]:
        """Absolute image paths of one split, in a fixed order."""
        return [self.root / rel for rel, _ in self.split_items(split)]

    def labels(self, split: str) -> list[int]:
        return [y for _, y in self.split_items(split)]

    def split_items(self, split: str) -> list[tuple[str, int]]:
        if split not in self.items:
            raise UserError(
                f"dataset {self.root} has no {split!r} split (it has {', '.join(self.items)}); pick one with --split"
            )
        rows = self.items[split]
        if not rows:
            raise UserError(f"dataset {self.root}: split {split!r} has no images; add images or rebuild the dataset")
        return rows

    def images_digest(self, split: str) -> str:
        """sha256 naming the images of `split` by content and label, not by path: two test sets share it exactly
        when they hold the same images (bytes) under the same classes, wherever their trees lie."""
        rows = sorted(
            f"{self.classes[y]}\t{hashlib.sha256((self.root / rel).read_bytes()).hexdigest()}\n"
            for rel, y in self.split_items(split)
        )
        return hashlib.sha256("".join(rows).encode()).hexdigest()

    def split_csv(self) -> str:
        """The split as CSV text (path,class,split), for saving beside a run."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["path", "class", "split"])
        for split, rows in self.items.items():
            for rel, y in rows:
                w.writerow([rel, self.classes[y], split])
        return buf.getvalue()


def resolve_root(name_or_path: str | os.PathLike) -> Path:
    """A dataset name or path -> its existing root directory (UserError naming where it looked)."""
    path = Path(name_or_path)
    if path.is_dir():
        return path.resolve()
    named = data_home() / str(name_or_path)
    if named.is_dir():
        return named.resolve()
    raise UserError(
        f"dataset {str(name_or_path)!r} not found as a path nor under {data_home()}/ "
        f"(set NATURALIZE_DATA or pass the dataset directory)"
    )


def scan_images(folder: Path, recursive: bool = False) -> tuple[list[Path], list[Path], list[Path]]:
    """(image files, other entries, hidden files) directly in `folder` (or anywhere below it when recursive, symlinked
    folders too: naturalize.paths.visible_files, not into hidden folders), each sorted. Hidden files
    (naturalize.paths.is_hidden_name: .DS_Store, ._X.jpg, Thumbs.db) are never read (hidden_note counts them); an
    image-named dangling symlink is an image (reading it fails, naming it); any other file (.gif, .txt ...), and a
    folder in a non-recursive scan, is "other": not read, and said so (describe_skipped).
    """
    images: list[Path] = []
    other: list[Path] = []
    hidden: list[Path] = []
    for p in visible_files(folder, hidden) if recursive else folder.iterdir():
        if is_hidden_name(p):
            if not p.is_dir():
                hidden.append(p)
            continue
        (images if is_image_name(p) and not p.is_dir() else other).append(p)
    return sorted(images), sorted(other), sorted(hidden)


def describe_skipped(other: Sequence[Path]) -> str:
    """One warning line: how many entries were not read, one example, and what is read."""
    kinds = "/".join(s.lstrip(".") for s in sorted(IMAGE_SUFFIXES))
    n, first = len(other), other[0]
    example = f"{first}/ (a folder in a class folder: not searched)" if first.is_dir() else str(first)
    return (
        f"warning: skipped {n} {'entry' if n == 1 else 'entries'} (not {kinds} image files), e.g. {example}; "
        f"convert any images among them to one of those types to use them"
    )


def order_classes(names: Sequence[str]) -> tuple[str, ...]:
    """Known PBC codes in the canonical CLASSES order first, then any other names alphabetically."""
    known = [c for c in CLASSES if c in names]
    return tuple(known + sorted(n for n in names if n not in CLASSES))


def _class_files(folder: Path, skipped: list[Path], hidden: list[Path]) -> dict[str, list[Path]]:
    """Image files per class folder of `folder` (classes without any left out); what is not read goes to
    `skipped`, hidden files to `hidden`."""
    found = {}
    for d in subdirs(folder):
        files, other, dotted = scan_images(d)
        skipped += other
        hidden += dotted
        if files:
            found[d.name] = files
    return found


def layout_of(root: Path) -> str:
    """The layout of a dataset root: split when it holds train/, val/ or test/, else plain (ROOT/<CLASS>/)."""
    return "split" if any((root / s).is_dir() for s in SPLITS) else "plain"


def load_dataset(
    name_or_path: str | os.PathLike,
    seed: int = 0,
    whole: bool = False,
    warn: Callable[[str], None] | None = None,
) -> Dataset:
    """Resolve and index a dataset; checks every split has the same non-empty class folders. `whole`: one split
    "all" of every image (a plain tree is not split, so any class size will do), e.g. an external test set.
    Entries of class folders that are not read are named in one line through `warn`, and hidden files (.DS_Store,
    ._X.jpg, Thumbs.db) counted in another."""
    skipped: list[Path] = []
    hidden: list[Path] = []
    root = resolve_root(name_or_path)
    data = _index(root, seed, whole, skipped, hidden)
    if skipped and warn is not None:
        warn(describe_skipped(skipped))
    if warn is not None and (note := hidden_note([p.relative_to(root).as_posix() for p in hidden])):
        warn(note)
    return data


def _index(root: Path, seed: int, whole: bool, skipped: list[Path], hidden: list[Path]) -> Dataset:
    meta = {}
    if (root / "dataset.json").is_file():
        meta = read_object(root / "dataset.json", "fix or remove it (a dataset's description)")
    present = [s for s in SPLITS if (root / s).is_dir()]
    if present:
        per_split = {s: _class_files(root / s, skipped, hidden) for s in present}
        if "train" not in per_split:
            raise UserError(
                f"dataset {root} has {', '.join(present)}/ but no train/; a split tree needs train/<CLASS>/"
            )
        for s, files in per_split.items():
            if not files:
                raise UserError(
                    f"dataset {root}: split {s}/ holds no class folders with images; "
                    f"add {s}/<CLASS>/*.jpg or remove {s}/"
                )
        ref = set(per_split["train"])
        for s, files in per_split.items():
            missing, extra = sorted(ref - set(files)), sorted(set(files) - ref)
            if missing or extra:
                parts = ([f"lacks {', '.join(missing)}"] if missing else []) + (
                    [f"has extra {', '.join(extra)}"] if extra else []
                )
                raise UserError(
                    f"dataset {root}: split {s}/ {' and '.join(parts)} compared with train/; "
                    f"every split needs the same non-empty class folders"
                )
        classes = order_classes(list(ref))
        index = {c: i for i, c in enumerate(classes)}
        items = {s: [((f"{s}/{c}/{p.name}"), index[c]) for c in classes for p in per_split[s][c]] for s in present}
        if whole:
            items = {WHOLE: [row for s in present for row in items[s]]}
        return Dataset(root, classes, "split", items, meta)
    files = _class_files(root, skipped, hidden)
    if not files:
        raise UserError(f"dataset {root} holds neither train/val/test/<CLASS>/ nor <CLASS>/ folders with images")
    classes = order_classes(list(files))
    index = {c: i for i, c in enumerate(classes)}
    rows = [(f"{c}/{p.name}", index[c]) for c in classes for p in files[c]]
    if whole:
        return Dataset(root, classes, "plain", {WHOLE: rows}, meta)
    try:
        assign = stratified_split([r for r, _ in rows], [classes[y] for _, y in rows], PLAIN_FRACTIONS, seed)
    except UserError:
        small = ", ".join(f"{c}/ has {len(files[c])}" for c in classes if len(files[c]) < MIN_PER_CLASS)
        raise UserError(
            f"dataset {root}: {len(rows)} images in {len(classes)} classes are too few to split 80/10/10 "
            f"stratified (every class needs at least {MIN_PER_CLASS}; {small}); add images to those class folders "
            f"or provide a train/val/test tree"
        ) from None
    items = {s: [r for r, a in zip(rows, assign) if a == s] for s in SPLITS}
    return Dataset(root, classes, "plain", items, meta)


def with_saved_split(data: Dataset, split_file: Path) -> Dataset:
    """A plain tree with the split a run saved (its split.csv: path,class,split), so that evaluating or resuming
    the run uses the split it was trained on, whatever the splitter or the seed-to-split mapping does today.
    Rows whose file is gone or whose class the dataset lacks are left out; a split tree, or no file, is returned
    as is."""
    if data.layout != "plain" or not split_file.is_file():
        return data
    index = {c: i for i, c in enumerate(data.classes)}
    items: dict[str, list[tuple[str, int]]] = {s: [] for s in SPLITS}
    with open(split_file, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["split"] in items and row["class"] in index and (data.root / row["path"]).is_file():
                items[row["split"]].append((row["path"], index[row["class"]]))
    return replace(data, items=items)


def check_classes(run_classes: Sequence[str], data: Dataset) -> None:
    """UserError when a run's classes differ from the dataset's (order included)."""
    if tuple(run_classes) != tuple(data.classes):
        raise UserError(
            f"the run was trained on classes {','.join(run_classes)} but dataset {data.root} has "
            f"{','.join(data.classes)}; evaluate on a dataset with the same class folders"
        )


def as_run_classes(run_classes: Sequence[str], data: Dataset) -> Dataset:
    """An external dataset relabelled in the run's class order (its labels index `run_classes`). A dataset holding
    only some of the run's classes (a lab's folder of 5 of the 11) keeps those; UserError naming the folders of
    classes the run does not know."""
    unknown = [c for c in data.classes if c not in run_classes]
    if unknown:
        raise UserError(
            f"dataset {data.root} has class folder(s) {', '.join(unknown)} that the run was not trained on (its "
            f"classes: {','.join(run_classes)}); remove or rename those folders to evaluate on the others"
        )
    index = [list(run_classes).index(c) for c in data.classes]
    items = {s: [(rel, index[y]) for rel, y in rows] for s, rows in data.items.items()}
    return replace(data, classes=tuple(run_classes), items=items)
