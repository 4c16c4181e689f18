"""`naturalize audit`: check a built dataset's protocol from its own files, without trusting the build's code.

In: a dataset folder written by `naturalize build` (files.csv, records.csv, dataset.json, synthetic/manifest.jsonl).
Out: an `Audit` listing what was checked and every problem found, each naming the file:

* the tree: every file in train/val/test is listed in files.csv and every listed file exists; a real file holds
  the bytes of its record (sha256), no real image sits in two splits, and no two files of different splits
  hold the same bytes (a duplicate copy, or a synthetic image equal to a real one) or, for real images, the same
  picture in other bytes (a re-saved copy: naturalize.neardup);
* the clean protocol: val/ and test/ hold real images only, and every synthetic image's plate or donor, each of
  its cells (white cell, red cells, platelets, kept donor cells) comes from a training image (records.csv);
* the paper protocol: the same tracing, counted (synthetic images in val/test, composites made from val/test
  images) as notes, since the paper's protocol pools them on purpose.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from naturalize.classes import SPLITS
from naturalize.fsio import UserError
from naturalize.neardup import file_thumbnail, same_picture_pairs
from naturalize.outputs import read_record
from naturalize.protocols import PROTOCOLS, Protocol
from naturalize.records import Record, read_records


@dataclass
class Audit:
    """What `audit_dataset` checked (`counts`), what breaks the dataset's protocol (`problems`, one line each,
    naming the file) and what the protocol allows but a reader should know (`notes`)."""

    dataset: str
    protocol: str  # its name, a key of PROTOCOLS
    counts: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems


def sources_of(line: Mapping) -> Iterator[tuple[str, str]]:
    """(role, source path relative to the PBC root) of everything a manifest line was made from: its plate or
    donor ('background') and every cell it lists (kept donor cells and placed sprites, 'cell:<kind>')."""
    background = line.get("background") or {}
    if background.get("source"):
        yield "background", background["source"]
    for cell in line.get("cells", ()):
        yield f"cell:{cell.get('kind', '?')}", cell.get("source", "")


FILES_COLUMNS = ("split", "class", "file", "origin", "source")


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"cannot read {path} ({e}): is this a dataset folder written by naturalize build?") from None
    if missing := [c for c in FILES_COLUMNS if c not in (reader.fieldnames or [])]:
        raise UserError(f"{path} lacks the column(s) {', '.join(missing)}: rebuild the dataset with naturalize build")
    return rows


def _read_manifest(path: Path) -> dict[str, dict]:
    """synthetic/manifest.jsonl -> {'synthetic/<CLASS>/<file>': line}; empty when there is none."""
    if not path.is_file():
        return {}
    try:
        lines = [json.loads(t) for t in path.read_text(encoding="utf-8").splitlines() if t.strip()]
        return {f"synthetic/{line['file']}": line for line in lines}
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path} is damaged ({e!r}): rebuild the dataset with naturalize build") from None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree_files(out: Path) -> set[str]:
    return {
        p.relative_to(out).as_posix() for s in SPLITS if (out / s).is_dir() for p in (out / s).rglob("*") if p.is_file()
    }


def _check_tree(
    out: Path, rows: list[dict[str, str]], records: Mapping[str, Record], audit: Audit, hashes: bool
) -> None:
    listed, present = {r["file"] for r in rows}, _tree_files(out)
    for rel in sorted(present - listed):
        audit.problems.append(f"{out / rel}: in the tree but not in files.csv (a file the build did not place)")
    for rel in sorted(listed - present):
        audit.problems.append(f"{out / rel}: listed in files.csv but missing")
    split_of: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        if r["origin"] == "real":
            split_of[r["source"]].add(r["split"])
            rec = records.get(r["source"])
            if rec is None:
                audit.problems.append(f"{out / r['file']}: real image {r['source']} has no row in records.csv")
            elif rec.split != r["split"]:
                audit.problems.append(f"{out / r['file']}: in {r['split']}/ but records.csv puts it in {rec.split!r}")
    for source, splits in sorted(split_of.items()):
        if len(splits) > 1:
            audit.problems.append(f"real image {source} sits in {' and '.join(sorted(splits))}")
    by_sha: dict[str, set[tuple[str, str]]] = defaultdict(set)  # digest -> (split, file): copies under other names
    for r in rows:
        if r["origin"] == "real" and r["source"] in records:
            by_sha[records[r["source"]].sha256].add((r["split"], r["file"]))
    digests: dict[str, str] = {}
    for r in rows if hashes else ():
        path = out / r["file"]
        if not path.is_file():
            continue
        digest = digests[r["file"]] = _sha256(path)
        audit.counts["files hashed"] += 1
        if r["origin"] == "real" and r["source"] in records and records[r["source"]].sha256 != digest:
            audit.problems.append(f"{path}: its bytes are not those of {r['source']} (records.csv sha256)")
        by_sha[digest].add((r["split"], r["file"]))
    real = [r for r in rows if r["origin"] == "real" and (out / r["file"]).is_file()] if hashes else []
    for i, j in same_picture_pairs([file_thumbnail(out / r["file"]) for r in real]):
        if real[i]["split"] != real[j]["split"] and digests[real[i]["file"]] != digests[real[j]["file"]]:
            audit.problems.append(
                f"the same picture in other bytes (a re-saved copy) sits in two splits: {real[i]['file']}, "
                f"{real[j]['file']}"
            )
    for digest, where in sorted(by_sha.items()):
        if len({split for split, _ in where}) > 1:
            files = ", ".join(sorted(file for _, file in where))
            audit.problems.append(f"the same bytes (sha256 {digest[:12]}...) sit in two splits: {files}")


def centre_cell(line: Mapping) -> tuple[str, str] | None:
    """(sprite id, source) of the cell a manifest line was composed for (its class's cell, `centre`), or None."""
    cell = next((c for c in line.get("cells", ()) if c.get("centre")), None)
    return (str(cell.get("sprite_id", "")), str(cell.get("source", ""))) if cell else None


def _check_synthetic(
    out: Path, rows: list[dict[str, str]], records: Mapping[str, Record], protocol: Protocol, audit: Audit
) -> None:
    manifest = _read_manifest(out / "synthetic" / "manifest.jsonl")
    made_from: Counter = Counter()
    held_out: list[tuple[str, tuple[str, str] | None]] = []  # (split, centre cell) of val/test composites
    train_cells: set[str] = set()  # sprite ids of the centre cells of training composites
    train_centre_sources: set[str] = set()  # the real images those cells were cut from
    train_sources: set[str] = set()  # every real image a training composite holds a cell or the plate of
    for r in rows:
        if r["origin"] != "synthetic":
            continue
        audit.counts["synthetic images"] += 1
        if r["split"] != "train":
            audit.counts[f"synthetic images in {r['split']}"] += 1
            if not protocol.pooled:
                audit.problems.append(
                    f"{out / r['file']}: a synthetic image in {r['split']}/ ({protocol.name}: real only)"
                )
        line = manifest.get(r["source"])
        if line is None:
            audit.problems.append(f"{out / r['file']}: no line for {r['source']} in synthetic/manifest.jsonl")
            continue
        centre = centre_cell(line)
        if r["split"] == "train":
            train_sources.update(source for _, source in sources_of(line))
            if centre:
                train_cells.add(centre[0])
                train_centre_sources.add(centre[1])
        else:
            held_out.append((r["split"], centre))
        splits = set()
        for role, source in sources_of(line):
            audit.counts["sources traced"] += 1
            rec = records.get(source)
            if rec is None:
                audit.problems.append(f"{out / r['file']}: its {role} comes from {source!r}, which records.csv lacks")
                continue
            splits.add(rec.split)
            if not protocol.sprite_source(rec.split):
                audit.problems.append(f"{out / r['file']}: its {role} comes from {source}, a {rec.split} image")
        for split in splits - {"train"}:
            made_from[split] += 1
    if not protocol.pooled:
        return
    for split in ("val", "test"):
        n = audit.counts[f"synthetic images in {split}"]
        audit.notes.append(f"{split}/ holds {n} synthetic image(s) (the {protocol.name} protocol pools them)")
        audit.notes.append(f"{made_from[split]} synthetic image(s) hold cells or a plate of {split} images")
        seen = sum(
            1
            for s, c in held_out
            if s == split and c and (c[0] in train_cells or getattr(records.get(c[1]), "split", "") == "train")
        )
        audit.notes.append(
            f"{seen} of the {n} synthetic {split} image(s) show a white cell (or platelet) that training also "
            f"shows: in a training composite or in its training source image"
        )
        real = [r["source"] for r in rows if r["origin"] == "real" and r["split"] == split]
        lent = sum(1 for source in real if source in train_centre_sources)
        held = sum(1 for source in real if source in train_sources)
        audit.notes.append(
            f"{lent} of the {len(real)} real {split} image(s) lend their white cell (or platelet) to a training "
            f"composite, {held} some cell or their plate: scores on real {split} images are optimistic too"
        )


def audit_dataset(out: str | Path, hashes: bool = True) -> Audit:
    """Audit the dataset folder `out` (see the module's docstring); `hashes` also hashes every file of the tree.
    UserError when `out` is not a dataset folder."""
    out = Path(out)
    meta_path = out / "dataset.json"
    meta = read_record(meta_path)
    if meta is None:  # missing, not JSON, or JSON but not an object (edited by hand)
        raise UserError(f"{meta_path} is missing or damaged: point to a dataset folder written by naturalize build")
    protocol = PROTOCOLS.get(str(meta.get("protocol", "")))
    if protocol is None:
        raise UserError(
            f"{meta_path} names protocol {meta.get('protocol')!r}, not one of {', '.join(PROTOCOLS)}: point to a "
            f"dataset folder written by naturalize build, or rebuild it"
        )
    audit = Audit(str(out), protocol.name)
    rows = _read_csv(out / "files.csv")
    try:
        records = {r.path: r for r in read_records(out / "records.csv")}
    except (OSError, UnicodeDecodeError, ValueError, KeyError, csv.Error) as e:
        raise UserError(f"{out / 'records.csv'} is missing or damaged ({e!r}): rebuild the dataset") from None
    audit.counts["real images"] = sum(1 for r in rows if r["origin"] == "real")
    for r in rows:
        audit.counts[f"{r['split']} {r['origin']}"] += 1
    _check_tree(out, rows, records, audit, hashes)
    _check_synthetic(out, rows, records, protocol, audit)
    return audit


def format_audit(audit: Audit, limit: int = 20) -> str:
    """The audit as lines: a verdict, the counts, the notes, then at most `limit` problems."""
    if not audit.ok:
        verdict = f"{len(audit.problems)} problem(s)"
    else:
        verdict = PROTOCOLS[audit.protocol].ok_verdict
    counts = ", ".join(f"{k} {v}" for k, v in sorted(audit.counts.items()))
    lines = [f"{audit.dataset} ({audit.protocol} protocol): {verdict}", f"  checked: {counts}"]
    lines += [f"  note: {n}" for n in audit.notes]
    lines += [f"  problem: {p}" for p in audit.problems[:limit]]
    if len(audit.problems) > limit:
        lines.append(f"  ... and {len(audit.problems) - limit} more")
    return "\n".join(lines)
