"""`naturalize build`: prepare -> segment -> compose -> the paper's datasets as directory trees.

    datasets/<recipe>/{train,val,test}/<CLASS>/   hard links to real images and synthetic images
    datasets/<recipe>/synthetic/                   the composed images (<CLASS>/), manifest.jsonl, annotations.json
    datasets/<recipe>/files.csv                    split, class, file, origin (real|synthetic), source
    datasets/<recipe>/records.csv                  the PBC records: the split folder each went to, curation flags
    datasets/<recipe>/dataset.json                 recipe, protocol, parameters, counts per split/class/origin

Protocols:
    clean  (default) real images are split first; sprites come only from training images; synthetic
           images go only into train; val and test are real only.
    paper  as the paper: real and synthetic images are pooled, then split 80/10/10, so test holds
           synthetic images built from sprites of test images.

Prepared records and sprite banks are cached under a work folder (default `<out>/../.work/<key>/`, the key a
hash of the PBC folder, seed, split and --max-real), so recipes built from the same PBC tree and seed share
them, and an interrupted build resumes.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from naturalize.classes import CLASSES, NO_WBC_CLASSES, SPLITS
from naturalize.codeversion import code_digest
from naturalize.compose.params import SCENES, ComposeParams, check_scene_counts
from naturalize.fsio import UserError, atomic_open, link_or_copy, remove_atomic_temps, write_json
from naturalize.outputs import (
    MARKER,
    check_disjoint,
    claim,
    claim_settled,
    dropped_if_unused,
    not_owned,
    read_record,
)
from naturalize.paths import data_home
from naturalize.prepare import PREPARE_CODE, apply_curation, left_out, prepare, stratified_split
from naturalize.protocols import DEFAULT as DEFAULT_PROTOCOL
from naturalize.protocols import PROTOCOLS as PROTOCOLS  # re-exported, as RECIPES
from naturalize.protocols import Protocol, get_protocol
from naturalize.recipes import RECIPES as RECIPES  # re-exported: `from naturalize.build import RECIPES` still works
from naturalize.recipes import Recipe, resolve_recipe, segments
from naturalize.records import Record, detect_layout, is_prepared, read_records, read_summary, write_records

KIND = "dataset"  # the output marker's kind (naturalize.outputs)
#: What build writes in its --out (and all that --overwrite removes there).
OUTPUTS = SPLITS + ("synthetic", "files.csv", "records.csv", "dataset.json")
#: The fix named when a cached bank was made with other settings (another Naturalize version or backend, or from an
#: input folder that has since moved): build's --overwrite replaces the dataset, never the cache, so it is not the fix.
STALE_CACHE = (
    "it is build's work cache, made with other settings (another Naturalize version or backend, or an input folder "
    "at another place, e.g. one since moved): delete that folder (the build remakes it; --overwrite does not) or "
    "pass --work DIR for a new cache"
)


# ---------------------------------------------------------------- layout (pure)


@dataclass(frozen=True)
class Item:
    """One file of the dataset: where it comes from and where it goes."""

    split: str
    cls: str
    src: Path  # file to link
    name: str  # file name in <split>/<CLASS>/
    origin: str  # real | synthetic
    source: str  # PBC record path (real) or the synthetic image's path relative to the dataset


def layout_items(
    real: Sequence[Record],
    root: Path,
    synthetic: Mapping[str, Sequence[Path]],
    protocol: Protocol,
    out: Path,
    seed: int,
    fractions: tuple[float, float, float],
) -> list[Item]:
    """Place real and synthetic files into splits according to the protocol."""
    items = [Item(r.split, r.cls, root / r.path, Path(r.path).name, "real", r.path) for r in real]
    syn = [(cls, p) for cls in sorted(synthetic) for p in synthetic[cls]]
    if not protocol.pooled:
        items += [Item("train", cls, p, p.name, "synthetic", p.relative_to(out).as_posix()) for cls, p in syn]
        return items
    # paper: pool everything, then split by class with the same seed, keyed by the source relative to the PBC root or
    # the dataset (as records are), so the split does not depend on where either folder lies
    pooled = items + [Item("", cls, p, p.name, "synthetic", p.relative_to(out).as_posix()) for cls, p in syn]
    pooled.sort(key=lambda i: i.source)
    splits = stratified_split([i.source for i in pooled], [i.cls for i in pooled], fractions, seed)
    return [replace(i, split=s) for i, s in zip(pooled, splits)]


def count_items(items: Sequence[Item]) -> dict:
    """split -> class -> {real, synthetic} counts."""
    counts = {s: {c: {"real": 0, "synthetic": 0} for c in CLASSES} for s in SPLITS}
    for i in items:
        counts[i.split][i.cls][i.origin] += 1
    return counts


# ---------------------------------------------------------------- shell


def _work_dir(
    pbc_root: Path, out: Path, seed: int, fractions: Sequence[float], per_class_cap: int | None, work: Path | None
) -> Path:
    if work is not None:
        return work
    key = json.dumps([str(pbc_root.resolve()), seed, list(fractions), per_class_cap])
    return out.resolve().parent / ".work" / hashlib.sha256(key.encode()).hexdigest()[:12]


def _prepared(
    pbc_root: Path,
    work: Path,
    seed: int,
    fractions: tuple[float, float, float],
    per_class_cap: int | None,
    workers: int,
    progress: bool,
) -> Path:
    prepared = work / "prepared"
    if not is_prepared(prepared):
        prepare(
            pbc_root,
            prepared,
            seed=seed,
            fractions=fractions,
            workers=workers,
            overwrite=True,
            progress=progress,
            per_class=per_class_cap,
        )
    return prepared


def check_cached_prepared(
    work: Path, pbc_root: Path, seed: int, fractions: Sequence[float], per_class_cap: int | None
) -> None:
    """UserError when the work folder's prepared records were made for another PBC folder, seed, split or
    --max-real (a shared `--work DIR` is not keyed by them): the build would lay out their split, not its own."""
    summary_path = work / "prepared" / "summary.json"
    if not is_prepared(work / "prepared") or not summary_path.is_file():
        return
    made = read_record(summary_path) or {}  # damaged: its settings are unknown, so they differ from this build's
    split_tree = made.get("layout") == "split"  # a train/val/test tree keeps its own split: no seed, no fractions
    wanted = {
        "PBC folder": str(pbc_root.resolve()),
        "seed": None if split_tree else seed,
        "split": None if split_tree else [float(f) for f in fractions],
        "--max-real": per_class_cap,
        "code (another version of naturalize's prepare)": code_digest(*PREPARE_CODE),
    }
    found = {
        "PBC folder": made.get("root"),
        "seed": made.get("seed"),
        "split": [float(f) for f in made["split_fractions"]] if made.get("split_fractions") else None,
        "--max-real": made.get("per_class_cap"),
        "code (another version of naturalize's prepare)": made.get("code"),
    }
    if differ := [k for k in wanted if wanted[k] != found[k]]:
        raise UserError(
            f"{work} holds records prepared with other settings ({', '.join(differ)} differ from this build's), "
            f"and a build lays out the split of its cached records; pass another --work (the default cache is "
            f"keyed by these settings), or delete {work} (the build remakes it)"
        )


def _tree_files(out: Path) -> set[str]:
    """The files the last build linked into OUT's split folders, as files.csv lists them ('train/PMY/x.jpg'): only
    entries of the form <split>/<CLASS>/<name>, so an edited or damaged files.csv names nothing outside them."""
    try:
        with (out / "files.csv").open(newline="", encoding="utf-8") as f:
            files = {row["file"] for row in csv.DictReader(f)}
    except (OSError, KeyError, csv.Error):
        return set()
    shape = [rel.split("/") for rel in files]
    return {
        "/".join(p) for p in shape if len(p) == 3 and p[0] in SPLITS and p[1] in CLASSES and p[2] not in ("", ".", "..")
    }


def foreign_files(out: Path) -> list[Path]:
    """Files in OUT's split folders that no build put there (not in OUT/files.csv), and files in OUT/synthetic/'s
    class folders that compose did not write; links too (never followed); sorted. A rebuild would remove or mix
    with them."""
    from naturalize.compose.run import foreign_files as foreign_composites

    listed = _tree_files(out)
    found = not_owned(out, SPLITS, lambda rel: rel in listed)
    synthetic = out / "synthetic"
    for cls in CLASSES if synthetic.is_dir() else ():
        found += foreign_composites(synthetic, cls)
    return sorted(found)


def written_by_build(out: Path) -> Callable[[str], bool]:
    """Whether a file's path inside dataset OUT ('train/PMY/x.jpg', 'synthetic/manifest.jsonl') is one build wrote
    there: listed in OUT/files.csv, or written by compose in OUT/synthetic/ (what --overwrite may remove)."""
    from naturalize.compose.run import written_by_compose

    listed = _tree_files(out)

    def owned(rel: str) -> bool:
        top, _, inner = rel.partition("/")
        return written_by_compose(inner) if top == "synthetic" else rel in listed

    return owned


def _claim_dataset(out: Path, pbc_root: Path, work_dir: Path, params: dict, overwrite: bool) -> None:
    """Before any work: --out and the work folder lie outside the PBC download; --out is new, empty, or a
    dataset this command built (the same parameters resume it; --overwrite removes what build wrote there)
    holding no file of the user's inside the folders build rewrites (those are refused, with or without
    --overwrite: nothing is removed)."""
    check_disjoint(out, [("the PBC download", pbc_root)])
    check_disjoint(work_dir, [("the PBC download", pbc_root)], option="--work")
    if claim(out, KIND, has_overwrite=True) == "ours":
        if foreign := foreign_files(out):
            raise UserError(
                f"{foreign[0]} was not written by naturalize build ({len(foreign)} such file(s) in {out}'s "
                f"train/val/test/synthetic folders, which a rebuild rewrites); nothing was changed: move them "
                f"out of {out} (or build into another --out), then rerun"
            )
    old = (read_record(out / "dataset.json") or {}).get("parameters")
    changed = ", ".join(changed_settings(old, params)) if isinstance(old, dict) else "unknown"
    claim_settled(
        out,
        KIND,
        OUTPUTS,
        record="dataset.json",
        differs=lambda old: old.get("parameters") != params,
        overwrite=overwrite,
        refusal=f"{out} holds a dataset built with other settings ({changed}); rerun with those settings to resume "
        f"it, or pass --overwrite to replace it (only what `naturalize build` wrote there is removed), or choose "
        f"another --out",
        owned=written_by_build(out),
    )
    remove_atomic_temps(out, (*OUTPUTS, MARKER))  # what a killed run left half-written


def changed_settings(old: Mapping, new: Mapping, prefix: str = "") -> list[str]:
    """The settings (dotted keys, e.g. 'seed', 'synthetic_rule.per_class') whose values differ between two
    dataset.json `parameters`; sorted."""
    keys = sorted(set(old) | set(new))
    out: list[str] = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += changed_settings(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}")
    return out


def scene_by_class(classes: Iterable[str], scene: str) -> dict[str, str]:
    """The scene each class is composed with: `scene`, but its `no_wbc_scene` (paper) for a class whose real images
    hold no white cell (PLT) when `scene` needs one (transplant replaces it, matched measures the scene around it)."""
    fallback = SCENES[scene].no_wbc_scene
    return {c: fallback if fallback and c in NO_WBC_CLASSES else scene for c in classes}


def curation_exclusions(banks: Iterable[Path]) -> dict[str, str]:
    """Record path -> curation flags of every image the banks' curation.csv rejects (keep=0)."""
    from naturalize.bank import Bank

    out: dict[str, str] = {}
    for path in banks:
        out.update({r["source"]: r["flags"] for r in Bank.open(path).curation if r["keep"] != "1"})
    return out


def check_splits_hold_classes(real: Sequence[Record], protocol: Protocol) -> None:
    """UserError when, after curation, a class has images but none in some split (classify could not use the
    dataset); checked before any image is composed."""
    if protocol.pooled:  # the pooled images are split anew
        return
    have = {(r.cls, r.split) for r in real}
    for cls in sorted({r.cls for r in real}, key=CLASSES.index):
        lacking = [s for s in SPLITS if (cls, s) not in have]
        if lacking:
            raise UserError(
                f"after curation class {cls} has no {'/'.join(lacking)} images, so the dataset could not "
                f"be trained on; use more images (a larger --max-real) or the uncurated recipe pbc11"
            )


def check_sources_to_compose(records: Sequence[Record], recipe: Recipe, protocol: Protocol, pbc_root: Path) -> None:
    """UserError, before any image is segmented, when the recipe composes a class of which the PBC tree holds no
    image to cut white cells from (the training split under the clean protocol): the build used to segment
    every image, then stop on a line about the work cache's bank."""
    sources = Counter(r.cls for r in records if protocol.sprite_source(r.split))
    missing = [c for c in recipe.synthetic_counts(Counter(r.cls for r in records)) if not sources[c]]
    if missing:
        held = ",".join(c for c in CLASSES if sources[c])
        raise UserError(
            f"{recipe.name} composes {', '.join(missing)} images, but {pbc_root} holds no {protocol.source_images} of "
            f"{'that class' if len(missing) == 1 else 'those classes'} to cut white cells from; add them to the "
            f"PBC tree, or build `custom --classes` of classes it holds (e.g. --classes {held or 'PMY'})"
        )


def _write_tree(out: Path, items: Sequence[Item]) -> None:
    """(Re)create out/<split>/<CLASS>/ with hard links (copies where links fail): remove the files the last
    build linked (OUT/files.csv) and the folders that leaves empty, write the new files.csv, then link (an
    interrupted run leaves a files.csv that lists every file it may have linked)."""
    root, emptied = out.resolve(), set()
    for rel in _tree_files(out):
        path = out / rel
        if path.parent.resolve().is_relative_to(root):  # never through a folder linked to elsewhere
            path.unlink(missing_ok=True)
            emptied |= {path.parent, path.parent.parent}
    for folder in sorted(emptied, key=lambda f: len(f.parts), reverse=True):  # class folders, then split folders
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    _write_files_csv(out / "files.csv", items)
    for i in items:
        dst = out / i.split / i.cls / i.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        link_or_copy(i.src, dst)


def tree_splits(records: Sequence[Record], items: Sequence[Item]) -> list[Record]:
    """`records` with each real image laid out in the tree given the split folder it went to (the paper protocol
    splits the pooled images anew, so prepare's split no longer says where a real image is); others unchanged."""
    where = {i.source: i.split for i in items if i.origin == "real"}
    return [replace(r, split=where.get(r.path, r.split)) for r in records]


def _write_files_csv(path: Path, items: Sequence[Item]) -> None:
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["split", "class", "file", "origin", "source"])
        for i in sorted(items, key=lambda i: (SPLITS.index(i.split), i.cls, i.name)):
            w.writerow([i.split, i.cls, f"{i.split}/{i.cls}/{i.name}", i.origin, i.source])


class _Stages:
    """Prints a numbered header per build stage ("[2/4] segment: ...") and holds what every stage shares: `echo`
    (where lines go), `workers` (processes), `progress` (whether to show progress bars)."""

    def __init__(self, echo: Callable[[str], None], total: int, workers: int, progress: bool) -> None:
        self.echo, self.total, self.number = echo, total, 0
        self.workers, self.progress = workers, progress

    def start(self, name: str, note: str) -> None:
        self.number += 1
        self.echo(f"[{self.number}/{self.total}] {name}: {note}")


@dataclass(frozen=True)
class SegmentOptions:
    """build's segmentation options (--backend, --checkpoint, --model-type, --device, --sam-set): as given, or
    resolved by `_segment_backend` (a named backend, the checkpoint it uses, the device it uses)."""

    backend: str = "auto"
    checkpoint: str | None = None
    model_type: str = "vit_b"
    device: str = "auto"
    sam_settings: Mapping[str, Any] = field(default_factory=dict)

    def values(self) -> dict[str, Any]:
        """The backend's option values by name (checkpoint, model_type, device, sam_settings)."""
        return {
            "checkpoint": self.checkpoint,
            "model_type": self.model_type,
            "device": self.device,
            "sam_settings": dict(self.sam_settings),
        }


def _segment_backend(seg: SegmentOptions, echo: Callable[[str], None]) -> SegmentOptions:
    """Resolve --backend once for the whole build (says "backend auto -> ..." once) -> the options with a named
    backend and its checkpoint; --device is dropped, with a note, when the backend does not use it. Bad options fail
    here, before any work."""
    from naturalize.segment import resolve_backend
    from naturalize.segment.run import ignored_device

    name, options, why = resolve_backend(seg.backend, seg.values())
    echo(why)
    device = seg.device
    if note := ignored_device(name, device):
        echo(note)
        device = "auto"
    return replace(seg, backend=name, checkpoint=options.get("checkpoint"), device=device)


def bank_plan(work_dir: Path, protocol: Protocol) -> dict[str, tuple[Path, str | None]]:
    """The build's banks in its work cache: part -> (bank folder, the split it segments). clean: one per split (the
    bank composed from holds training images only); paper: one of every image (split None)."""
    if protocol.sprite_split is not None:
        return {part: (work_dir / f"bank-{part}", part) for part in SPLITS}
    return {"all": (work_dir / "bank-all", None)}


def _check_cached_banks(work_dir: Path, protocol: Protocol, seg: SegmentOptions) -> None:
    """UserError (STALE_CACHE) when a bank in the work cache was made with settings this build would not resume
    (another Naturalize version or backend, or another input folder); nothing when there is none yet."""
    from naturalize.segment.run import check_cached_bank

    prepared = work_dir / "prepared"
    if not is_prepared(prepared):
        return
    seg = _segment_backend(seg, lambda m: None)
    for bank, split in bank_plan(work_dir, protocol).values():
        if bank.exists():
            check_cached_bank(prepared, bank, split, seg.backend, seg.values(), STALE_CACHE)


def _changed_options(params: ComposeParams) -> dict:
    """Compose settings that differ from the defaults, JSON-ready (dataset.json records them)."""
    default = ComposeParams().as_dict()
    return {k: v for k, v in params.as_dict().items() if v != default[k]}


def _build_params(
    recipe: Recipe,
    protocol: Protocol,
    seed: int,
    fractions: tuple[float, float, float],
    pbc_root: Path,
    seg: SegmentOptions,
    per_class_cap: int | None,
    compose: ComposeParams,
) -> dict:
    """The build's settings, JSON-ready -> dataset.json's `parameters` (also what the output marker compares)."""
    return {
        "recipe": recipe.name,
        "protocol": protocol.name,
        "seed": seed,
        "split": list(fractions),
        "pbc_root": str(pbc_root.resolve()),
        "backend": seg.backend,
        "checkpoint": seg.checkpoint,
        **({"sam_settings": dict(sorted(seg.sam_settings.items()))} if seg.sam_settings else {}),
        "per_class_cap": per_class_cap,
        "synthetic_rule": {
            "topup": dict(recipe.topup),
            "per_class": recipe.per_class,
            "classes": list(recipe.classes),
            "balance": recipe.balance,
        },
        "compose": _changed_options(compose),
    }


def _prepare_stage(
    stages: _Stages,
    pbc_root: Path,
    work_dir: Path,
    seed: int,
    fractions: tuple[float, float, float],
    per_class_cap: int | None,
) -> tuple[Path, list[Record], dict]:
    """Stage "prepare": the records and split, cached in `work_dir/prepared` -> (prepared folder, records, summary);
    echoes what prepare left out (unreadable files, unread folders)."""
    cache = "cached in" if is_prepared(work_dir / "prepared") else "caching them in"
    stages.start("prepare", f"records and the {'/'.join(f'{f:g}' for f in fractions)} split ({cache} {work_dir})")
    prepared = _prepared(pbc_root, work_dir, seed, fractions, per_class_cap, stages.workers, stages.progress)
    records = read_records(prepared / "records.csv")
    summary = read_summary(
        prepared, f"it is build's work cache: delete {work_dir} (the build remakes it) or pass --work DIR"
    )
    for line in left_out(summary):
        stages.echo(line)  # unreadable files and unread folders, which prepare prints and the build would hide
    return prepared, records, summary


def _segment_stage(
    stages: _Stages,
    recipe: Recipe,
    protocol: Protocol,
    prepared: Path,
    work_dir: Path,
    records: list[Record],
    seg: SegmentOptions,
) -> tuple[dict[str, Path], list[Record]]:
    """Stage "segment" (only when the recipe segments): every image once into the work cache's banks, then
    curation -> (part -> bank folder, the records with curation flags); ({}, records unchanged) otherwise."""
    from naturalize.segment.run import ALL_SPLITS_NOTE, segment

    banks: dict[str, Path] = {}
    echo = stages.echo
    if not segments(recipe) and (seg.backend != "auto" or seg.checkpoint or seg.sam_settings):
        echo(f"note: {recipe.name} segments no image (no curation, no synthetic images): --backend is not used")
    elif segments(recipe):
        seg = _segment_backend(seg, echo)
        kwargs: dict[str, Any] = dict(
            backend=seg.backend,
            **seg.values(),
            workers=stages.workers,
            progress=stages.progress,
            echo=lambda m: None if m.startswith("backend ") or m == ALL_SPLITS_NOTE else echo(m),
        )
        # clean: one bank per split, so the bank composed from holds training images only;
        # paper: one bank of every image. Either way every image is segmented once, for curation.
        stages.start(
            "segment",
            "every image once (curation); sprites for composing come from " + protocol.sprites_from,
        )
        for part, (bank, split) in bank_plan(work_dir, protocol).items():
            banks[part] = bank
            segment(prepared, bank, split=split, stale_fix=STALE_CACHE, **kwargs)
        records = apply_curation(records, curation_exclusions(banks.values()))
    return banks, records


def _compose_stage(
    stages: _Stages,
    recipe: Recipe,
    protocol: Protocol,
    wanted: Mapping[str, int],
    scenes: Mapping[str, str],
    banks: Mapping[str, Path],
    out: Path,
    seed: int,
    compose: ComposeParams,
) -> dict[str, list[Path]]:
    """Stage "compose": `wanted` (class -> count) synthetic images from the bank of training images (clean) or of
    all images (paper) into `out/synthetic` -> class -> the composed images; {} when nothing is wanted."""
    from naturalize.compose.run import compose_class

    synthetic: dict[str, list[Path]] = {}
    if wanted:
        bank = banks[protocol.sprite_split or "all"]
        stages.start("compose", ", ".join(f"{cls} {n}" for cls, n in wanted.items()) + " synthetic images")
        for cls in sorted(c for c, scene in scenes.items() if scene != compose.scene):
            stages.echo(
                f"note: {cls} composites use the {scenes[cls]} scene: its real images hold no white cell for "
                f"the {compose.scene} scene (dataset.json: scene_by_class)"
            )
        for cls, n in wanted.items():
            synthetic[cls] = compose_class(
                bank,
                cls,
                n,
                out / "synthetic",
                seed=seed,
                params=replace(compose, scene=scenes[cls]),
                workers=stages.workers,
                progress=stages.progress,
                warn=stages.echo,
            )
    elif recipe.adds_synthetic:  # curation and --max-real can leave nothing to add: say so, keep the count
        stages.start("compose", "nothing to compose: no class the recipe augments is below its target")
    return synthetic


def _dataset_meta(
    recipe: Recipe,
    protocol: Protocol,
    params: dict,
    records: Sequence[Record],
    real_counts: Mapping[str, int],
    synthetic: Mapping[str, list[Path]],
    composed: bool,
    scenes: dict[str, str],
    items: Sequence[Item],
    work_dir: Path,
    out: Path,
) -> dict:
    """dataset.json's content: the recipe, the settings, counts per class / split / origin, where the work cache
    and the dataset are (absolute). `composed`: whether the recipe wanted synthetic images (sprite_sources)."""
    return {
        "format": "naturalize-dataset/1",
        "recipe": recipe.name,
        "description": recipe.description,
        "protocol": protocol.name,
        "parameters": params,
        "classes": list(CLASSES),
        "real_counts": {c: real_counts.get(c, 0) for c in CLASSES},
        "synthetic_counts": {c: len(synthetic.get(c, [])) for c in CLASSES},
        "curated_out": sum(1 for r in records if r.excluded) if recipe.curated else 0,
        "sprite_sources": protocol.sprite_sources if composed else None,
        "scene_by_class": scenes,
        "counts": count_items(items),
        "work": str(work_dir.resolve()),  # absolute, as pbc_root: a consumer elsewhere finds the banks
        "out": str(out.resolve()),
    }


def build(
    recipe_name: str,
    pbc_root: str | Path,
    out: str | Path | None = None,
    protocol: str = DEFAULT_PROTOCOL,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    backend: str = "auto",
    checkpoint: str | None = None,
    model_type: str = "vit_b",
    device: str = "auto",
    sam_settings: Mapping[str, Any] | None = None,
    classes: Sequence[str] = (),
    per_class: int | None = None,
    per_class_cap: int | None = None,
    workers: int = 2,
    work: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    compose: ComposeParams | None = None,
    echo: Callable[[str], None] = print,
) -> dict:
    """Build one dataset recipe; returns the dataset.json content. `compose`: how the synthetic images look
    (default ComposeParams()); dataset.json records the fields that differ from the defaults. `sam_settings`
    (--sam-set): SamParams fields for the sam backend (dataset.json records them when given).

    Stages: check options, claim --out, prepare, segment (banks + curation), compose, dataset tree + dataset.json."""
    proto = get_protocol(protocol)
    recipe = resolve_recipe(recipe_name, classes, per_class)
    pbc_root = Path(pbc_root)
    out = Path(out) if out is not None else data_home() / recipe.name
    compose = compose or ComposeParams()
    check_scene_counts(compose)  # before any work
    seg = SegmentOptions(backend, checkpoint, model_type, device, dict(sam_settings or {}))
    if segments(recipe):  # bad segmentation options (e.g. --sam-set with the classical backend) fail before any work
        _segment_backend(seg, lambda m: None)
    params = _build_params(recipe, proto, seed, fractions, pbc_root, seg, per_class_cap, compose)
    work_dir = _work_dir(pbc_root, out, seed, fractions, per_class_cap, Path(work) if work else None)
    detect_layout(pbc_root)  # a --pbc that is no PBC tree is refused before any folder is made or announced
    # a build that fails before writing anything leaves no --out or work folder holding only a marker
    with dropped_if_unused(out), dropped_if_unused(work_dir / "prepared"):
        check_cached_prepared(work_dir, pbc_root, seed, fractions, per_class_cap)  # before any folder is claimed
        if overwrite and segments(recipe):  # a stale cached bank must stop the build before the old dataset goes
            _check_cached_banks(work_dir, proto, seg)
        _claim_dataset(out, pbc_root, work_dir, params, overwrite)
        if proto.warning:
            echo(proto.warning)

        stages = _Stages(echo, 4 if recipe.adds_synthetic else 3 if segments(recipe) else 2, workers, progress)
        prepared, records, summary = _prepare_stage(stages, pbc_root, work_dir, seed, fractions, per_class_cap)
        check_sources_to_compose(records, recipe, proto, pbc_root)
        banks, records = _segment_stage(stages, recipe, proto, prepared, work_dir, records, seg)
        root = Path(summary["root"])
        real = [r for r in records if not (recipe.curated and r.excluded)]
        real_counts = Counter(r.cls for r in real)
        check_splits_hold_classes(real, proto)
        wanted = recipe.synthetic_counts(real_counts)
        scenes = scene_by_class(wanted, compose.scene)
        synthetic = _compose_stage(stages, recipe, proto, wanted, scenes, banks, out, seed, compose)

        stages.start("dataset tree", f"{out}/{{train,val,test}}/<CLASS>/, files.csv, dataset.json")
        items = layout_items(real, root, synthetic, proto, out, seed, fractions)
        _write_tree(out, items)
        write_records(out / "records.csv", tree_splits(records, items))
        meta = _dataset_meta(
            recipe, proto, params, records, real_counts, synthetic, bool(wanted), scenes, items, work_dir, out
        )
        write_json(out / "dataset.json", meta)
        return meta


def format_table(meta: Mapping) -> str:
    """Per-class counts per split, real + synthetic."""
    lines = [
        f"{meta['recipe']} ({meta['protocol']} protocol): {meta['description']}",
        f"{'Class':<5} " + " ".join(f"{s + ' real':>10} {s + ' syn':>9}" for s in SPLITS),
    ]
    for c in CLASSES:
        cells = " ".join(f"{meta['counts'][s][c]['real']:>10} {meta['counts'][s][c]['synthetic']:>9}" for s in SPLITS)
        lines.append(f"{c:<5} {cells}")
    return "\n".join(lines)
