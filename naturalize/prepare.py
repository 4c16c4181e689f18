"""`naturalize prepare`: scan a PBC tree, split it, and write records.csv, dropped.csv, summary.json.

OUT/records.csv    one row per kept image (records.RECORD_COLUMNS) with its split; `excluded` stays empty
                   here (this folder is never rewritten: `naturalize build` fills it in the dataset's own
                   copy from the banks' curation.csv, apply_curation)
OUT/dropped.csv    every file left out and why
OUT/summary.json   counts per class, per split and per rule
OUT/<split>/<CLASS>/   with --materialize: hard links (copies where links fail) of kept images
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from naturalize.classes import CLASS_NAMES, CLASSES, SPLITS
from naturalize.codeversion import code_digest
from naturalize.fsio import UserError, link_or_copy, write_json
from naturalize.outputs import check_disjoint, claim, remove_written, write_marker
from naturalize.paths import hidden_note
from naturalize.records import (
    Record,
    Scan,
    read_records,
    scan,
    unread_note,
    with_split,
    write_dropped,
    write_records,
)

#: The modules whose code makes prepared records (their digest is summary.json's `code`: build does not reuse records
#: of other code from its work cache).
PREPARE_CODE = (
    "naturalize.prepare",
    "naturalize.records",
    "naturalize.neardup",
    "naturalize.classes",
    "naturalize.paths",
)

OUTPUTS = ("records.csv", "dropped.csv", "summary.json") + SPLITS
KIND = "prepared"  # the output marker's kind (naturalize.outputs)
MIN_PER_CLASS = 3


def _class_stream(cls: str) -> list[int]:
    """The key of a class's own random stream: its index for the 11 PBC classes, its name's bytes for others
    (a plain class tree in `classify` may hold any folder name)."""
    return [CLASSES.index(cls)] if cls in CLASSES else list(cls.encode())


def stratified_split(
    keys: Sequence[str], classes: Sequence[str], fractions: tuple[float, float, float], seed: int
) -> list[str]:
    """'train' | 'val' | 'test' for each item (its unique key, e.g. a path, and its class), stratified by class and
    seeded. Input order does not matter, nor do the other classes present: each class is ordered by key, shuffled
    with its own generator (seed, class) and cut so that it holds the given fractions (rounded; at least one val
    and one test item when those fractions are > 0). UserError when a class is too small to cut so.

    (A numpy splitter rather than scikit-learn's: datasets users built must keep their split for the same seed.)
    """
    by_class: dict[str, list[int]] = {}
    for i in sorted(range(len(keys)), key=keys.__getitem__):
        by_class.setdefault(classes[i], []).append(i)
    small = {c: len(v) for c, v in by_class.items() if len(v) < MIN_PER_CLASS}
    if small and (fractions[1] > 0 or fractions[2] > 0):
        worst = ", ".join(f"{c} ({n})" for c, n in sorted(small.items()))
        raise UserError(
            f"too few images to split by class: {worst}; each class needs at least {MIN_PER_CLASS} "
            f"(add images, or pass a train/val/test tree)"
        )
    out = [""] * len(keys)
    for cls, members in by_class.items():
        n = len(members)
        n_val, n_test = (max(1, round(n * f)) if f > 0 else 0 for f in fractions[1:])
        order = np.random.default_rng([seed, *_class_stream(cls)]).permutation(n)
        names = np.array(["train"] * n, dtype=object)
        names[order[:n_val]] = "val"
        names[order[n_val : n_val + n_test]] = "test"
        for i, name in zip(members, names):
            out[i] = str(name)
    return out


def split_records(records: Sequence[Record], fractions: tuple[float, float, float], seed: int) -> list[Record]:
    """Copies of `records` with train/val/test assigned by `stratified_split` (keyed by path), sorted by path."""
    ordered = sorted(records, key=lambda r: r.path)
    return with_split(ordered, stratified_split([r.path for r in ordered], [r.cls for r in ordered], fractions, seed))


def subsample(records: Sequence[Record], per_class: int, seed: int) -> list[Record]:
    """At most `per_class` records of each class, chosen with a seeded generator (for quick runs)."""
    by_class: dict[str, list[Record]] = {}
    for r in sorted(records, key=lambda r: r.path):
        by_class.setdefault(r.cls, []).append(r)
    out: list[Record] = []
    for cls, recs in by_class.items():
        keep = np.random.default_rng([seed, CLASSES.index(cls), 1]).permutation(len(recs))[:per_class]
        out.extend(recs[i] for i in sorted(keep))
    return sorted(out, key=lambda r: r.path)


def count_records(records: Sequence[Record]) -> dict:
    """Kept images per class and split, and curated-out images per class (summary.json's count fields)."""
    per_class = {c: {s: 0 for s in ("total",) + SPLITS} for c in CLASSES}
    excluded = Counter(r.cls for r in records if r.excluded)
    for r in records:
        if not r.excluded:
            per_class[r.cls]["total"] += 1
            if r.split:
                per_class[r.cls][r.split] += 1
    return {
        "images": sum(v["total"] for v in per_class.values()),
        "per_class": per_class,
        "per_split": {s: sum(v[s] for v in per_class.values()) for s in SPLITS},
        "curated_out": dict(sorted(excluded.items())),
    }


def summarize(result: Scan, records: Sequence[Record], seed: int | None, fractions: Sequence[float] | None) -> dict:
    """The counts a user checks: per class and split, and per rule (dropped, duplicates, non-images...)."""
    reasons = Counter(d.reason for d in result.dropped)
    unlabeled = Counter(d.detail for d in result.dropped if d.reason == "unlabeled")
    return {
        "format": "naturalize-records/1",
        "root": str(result.root),
        "layout": result.layout,
        "seed": seed,
        "split_fractions": list(fractions) if fractions else None,
        **count_records(records),
        "dropped": dict(sorted(reasons.items())),
        "unlabeled_dropped": dict(sorted(unlabeled.items())),
        "duplicates_removed": reasons["duplicate"] + reasons["duplicate_conflict"] + reasons["near_duplicate"],
        "re_encoded_copies": reasons["near_duplicate"],
        "non_images_skipped": reasons["non_image"],
        "unreadable": [
            {"path": d.path, "reason": d.reason, "detail": d.detail}
            for d in result.dropped
            if d.reason in ("unreadable", "empty")
        ],
        "empty_folders": result.empty_folders,
        "ignored": result.ignored,
        "hidden": [d.path for d in result.dropped if d.reason == "hidden"],
    }


def left_out(summary: Mapping) -> list[str]:
    """Lines naming what the scan of `summary` did not take in: each unreadable file, the folders not read, and a
    count of the hidden files (dot-files, Thumbs.db) skipped."""
    lines = [f"  skipped {u['path']}: {u['detail']}" for u in summary["unreadable"]]
    if note := unread_note(summary["root"], summary.get("ignored", [])):
        lines.append(note)
    if note := hidden_note(summary.get("hidden", [])):
        lines.append(note)
    return lines


def format_table(summary: Mapping) -> str:
    """A per-class table like the paper's Table 2, followed by what was dropped."""
    lines = [f"{'Class':<5} {'Cell type':<21} {'Images':>7} {'%':>6} {'Train':>6} {'Val':>5} {'Test':>5}"]
    total = summary["images"] or 1
    for c in CLASSES:
        v = summary["per_class"][c]
        lines.append(
            f"{c:<5} {CLASS_NAMES[c]:<21} {v['total']:>7} {100 * v['total'] / total:>5.1f}% "
            f"{v['train']:>6} {v['val']:>5} {v['test']:>5}"
        )
    s = summary["per_split"]
    lines.append(f"{'all':<27} {summary['images']:>7} {100.0:>5.1f}% {s['train']:>6} {s['val']:>5} {s['test']:>5}")
    unl = ", ".join(f"{k} {v}" for k, v in summary["unlabeled_dropped"].items()) or "none"
    lines.append(
        f"dropped: unlabeled {unl}; duplicates {summary['duplicates_removed']}"
        + (f" (re-encoded copies {n})" if (n := summary.get("re_encoded_copies", 0)) else "")
        + "; "
        f"non-images {summary['non_images_skipped']}; unreadable {len(summary['unreadable'])}; "
        f"unknown prefix {summary['dropped'].get('unknown_prefix', 0)}"
    )  # hidden files: a note of their own (left_out)
    lines += left_out(summary)
    if summary["curated_out"]:
        lines.append(
            "curated out (multi-cell etc.): " + ", ".join(f"{k} {v}" for k, v in summary["curated_out"].items())
        )
    for folder in summary["empty_folders"]:
        lines.append(f"  empty folder: {folder}")
    return "\n".join(lines)


def tree_names(out: Path) -> set[str]:
    """The files an earlier `prepare --materialize` may have linked into OUT ('train/PMY/PMY_1.jpg', also under
    '.train.tmp/'), from its OUT/records.csv (none when that is missing or damaged)."""
    try:
        records = read_records(out / "records.csv")
    except (OSError, ValueError, UserError):
        return set()
    names = set()
    for r in records:
        name = Path(r.path).name
        for top in (r.split, f".{r.split}.tmp"):
            names |= {f"{top}/{r.cls}/{name}", f"{top}/{r.cls}/{r.folder}__{name}"}
    return names


def _check_out(root: Path, out: Path, overwrite: bool) -> None:
    """Refuse an --out that overlaps the PBC tree or holds anything but an earlier prepared directory; with
    overwrite, remove what that earlier run wrote (only that: a split folder holding a file records.csv does not
    name is refused)."""
    check_disjoint(out, [("the PBC tree", root)])
    if claim(out, KIND, has_overwrite=True) == "ours":
        present = [name for name in OUTPUTS if (out / name).exists()]
        if present and not overwrite:
            raise UserError(
                f"{out} already holds a prepared dataset ({', '.join(present)}); pass --overwrite to replace it"
            )
        remove_written(out, KIND, owned=tree_names(out).__contains__)


def materialize_tree(root: Path, records: Sequence[Record], out: Path) -> None:
    """Lay out OUT/<split>/<CLASS>/<file name> for non-excluded records: hard links, else copies.

    Each split folder is built under a temporary name and renamed into place when complete.
    """
    by_split: dict[str, list[Record]] = {s: [] for s in SPLITS}
    for r in records:
        if r.split and not r.excluded:
            by_split[r.split].append(r)
    for split, recs in by_split.items():
        tmp = out / f".{split}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        for r in recs:
            src = root / r.path
            dst = tmp / r.cls / Path(r.path).name
            if dst.exists():  # same name in two source folders: keep both
                dst = dst.with_name(f"{r.folder}__{dst.name}")
            dst.parent.mkdir(parents=True, exist_ok=True)
            link_or_copy(src, dst)
        tmp.mkdir(parents=True, exist_ok=True)
        final = out / split
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)


def prepare(
    pbc_root: str | Path,
    out: str | Path,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    materialize: bool = False,
    workers: int = 2,
    overwrite: bool = False,
    progress: bool = True,
    per_class: int | None = None,
) -> dict:
    """Scan, split and write a prepared directory; returns the summary.

    `per_class` keeps at most that many images of each class (seeded), for quick runs.
    """
    pbc_root, out = Path(pbc_root), Path(out)
    _check_out(pbc_root, out, overwrite)
    result = scan(pbc_root, workers=workers, progress=progress)
    if not result.records:
        raise UserError(f"no labelled PBC images found under {pbc_root}; point to the folder holding the class folders")
    if per_class is not None:
        if per_class < 1:
            raise UserError(f"--per-class {per_class} must be at least 1")
        result.records = subsample(result.records, per_class, seed)
    if result.layout == "split":
        records, seed_used, fr = result.records, None, None
    else:
        records, seed_used, fr = split_records(result.records, fractions, seed), seed, fractions
    write_marker(out, KIND, list(OUTPUTS[:3]) + ([n for s in SPLITS for n in (s, f".{s}.tmp")] if materialize else []))
    summary = summarize(result, records, seed_used, fr)
    summary["per_class_cap"] = per_class
    summary["code"] = code_digest(*PREPARE_CODE)
    write_records(out / "records.csv", records)
    write_dropped(out / "dropped.csv", result.dropped)
    write_json(out / "summary.json", summary)
    if materialize:
        materialize_tree(result.root, records, out)
    return summary


def apply_curation(records: Sequence[Record], excluded: Mapping[str, str]) -> list[Record]:
    """Copies of `records` with `excluded` (record path -> reason, e.g. 'multi_wbc', from a bank's curation)
    filled in. Pure: the prepared directory is an input and is never rewritten; `naturalize build` applies
    curation to its own copy of the records."""
    return [replace(r, excluded=excluded[r.path]) if r.path in excluded else r for r in records]
