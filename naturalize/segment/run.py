"""`naturalize segment`: cut every source image into a sprite bank (the shell around the backends).

In: a raw PBC tree or a `naturalize prepare` directory, a backend and its options (inputs are never
modified). Out: the bank (see naturalize/bank/), whose curation.csv holds the curation result.

Workers segment and encode images (PNG; only a mask for rejected sprites) in parallel; the main process
writes them in source order, so the bank does not depend on --workers. A run that stops midway leaves a
valid bank; rerunning the same command resumes it.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from naturalize.bank import KIND, KINDS, PASS, STALE_FIX, BankWriter, EncodedSprite, ImageEntry, encode_mask
from naturalize.codeversion import code_digest
from naturalize.decode import load_image
from naturalize.fsio import UserError
from naturalize.outputs import check_disjoint, claim
from naturalize.paths import fit_name
from naturalize.procs import die_with_parent, pool_context, started, watched
from naturalize.segment import BACKENDS, resolve_backend
from naturalize.segment.cells import crop_sprite

#: PNG settings of sprites and backgrounds: zlib level 1 with the run-length strategy is lossless, several
#: times faster than the default level and smaller on these smooth plates; the Paeth row filter alone (instead
#: of libpng's adaptive choice among all five) encodes ~35 % faster at the same size (issue 12 benchmark).
PNG_PARAMS = (1, 3, 128)  # (compression level, cv2.IMWRITE_PNG_STRATEGY_RLE, cv2.IMWRITE_PNG_FILTER_PAETH)
#: The modules whose code shapes a bank's files (their digest is bank.json's `code`: a bank made by other code is
#: not resumed, and build does not reuse it). The backends' learned weights are in `parameters`.
SEGMENT_CODE = (
    "naturalize.segment",
    "naturalize.segment.assign",
    "naturalize.segment.border",
    "naturalize.segment.cells",
    "naturalize.segment.classical",
    "naturalize.segment.colour",
    "naturalize.segment.gate",
    "naturalize.segment.inpaint",
    "naturalize.segment.outline",
    "naturalize.segment.refine",
    "naturalize.segment.sam",
    "naturalize.segment.run",
    "naturalize.bank",
    "naturalize.decode",
)


@dataclass(frozen=True)
class Task:
    """One source image to segment: absolute path, path relative to the root, fine class, id stem."""

    path: str
    source: str
    label: str
    stem: str


@dataclass
class RunSummary:
    """What a run did, for the command's report."""

    backend: str
    out: Path
    total: int
    skipped: int
    written: int
    counts: dict = field(default_factory=dict)
    qc: Path | None = None  # the QC page (BANK/qc/index.html)


# ---------------------------------------------------------------- worker side (pure per image)

_SEGMENTER: Callable[..., Any] | None = None


def _init_worker(backend: str, options: dict) -> None:
    global _SEGMENTER
    die_with_parent()
    from naturalize.segment import make_segmenter

    _SEGMENTER = make_segmenter(backend, **options)


def _png(array: np.ndarray) -> bytes:
    """PNG bytes of an RGB or RGBA uint8 array (deterministic)."""
    import cv2

    code = cv2.COLOR_RGBA2BGRA if array.shape[2] == 4 else cv2.COLOR_RGB2BGR
    ok, buf = cv2.imencode(
        ".png",
        cv2.cvtColor(array, code),
        [cv2.IMWRITE_PNG_COMPRESSION, PNG_PARAMS[0], cv2.IMWRITE_PNG_STRATEGY, PNG_PARAMS[1]]
        # the filter option exists from OpenCV 4.11 on; older ones keep libpng's adaptive filter
        + ([cv2.IMWRITE_PNG_FILTER, PNG_PARAMS[2]] if hasattr(cv2, "IMWRITE_PNG_FILTER") else []),
    )
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def read_rgb(path: str) -> np.ndarray:
    """RGB uint8 array of an image file, decoded the one way every command reads it (naturalize.decode: pixels
    as stored, 16-bit scaled, transparency over white); UserError naming the file when it cannot be decoded."""
    try:
        return load_image(path, None)
    except UserError as e:
        raise UserError(f"{e}; `naturalize prepare` lists every damaged file of a tree") from None


def encode(task: Task, rgb: np.ndarray, seg: Any) -> ImageEntry:
    """Segmentation of one image -> the entry a bank stores.

    Every cell found becomes a sprite with the quality gate's verdict (naturalize/segment/gate.py):
    reason "ok" sprites (PNG) are what `Bank.select` gives the compositor, the others are kept as their mask
    (COCO RLE, no PNG) for the QC page, the transplant scene's labels and the counts. A white cell's class is
    recorded only where it is known: a white-cell image (not PLT) holding a single white cell (also when cut by
    the border or refused for its shape). keep=0 marks images with several white cells (multi_wbc); tiny, blank
    and noise images give no background either and are flagged with that reason; a grey (unstained) image is
    flagged grey_image and gives no background, but stays in the dataset (keep=1).
    """
    from naturalize.segment.gate import IMAGE_REASONS, UNFIT_REASONS, judge

    verdicts = judge(rgb, seg, task.label)
    whole = next((v.reason for v in verdicts if v.reason in IMAGE_REASONS and v.reason != "no_wbc_image"), "")
    if not whole and not seg.cells:
        from naturalize.segment.gate import image_reason

        whole = image_reason(rgb)
    flags = tuple(seg.flags) + ((whole,) if whole else ())
    chosen = sorted(zip(seg.cells, verdicts), key=lambda cv: (KINDS.index(cv[0].kind), cv[0].box[1], cv[0].box[0]))
    sprites = []
    for c, v in chosen:
        x0, y0, x1, y1 = c.box
        inside = c.mask[y0:y1, x0:x1]
        passed = v.reason == PASS
        label = task.label if c.kind == "WBC" and v.reason in ("ok", "border", "shape") else ""
        sprites.append(
            EncodedSprite(
                c.kind,
                _png(crop_sprite(rgb, c.mask, c.box)) if passed else b"",
                x0,
                y0,
                x1,
                y1,
                int(np.count_nonzero(inside)),
                round(float(c.score), 4),
                bool(c.touches_border),
                v.quality,
                v.reason,
                label,
                "" if passed else encode_mask(inside),
            )
        )
    n = Counter(c.kind for c in seg.cells)
    h, w = rgb.shape[:2]
    return ImageEntry(
        task.source,
        task.label,
        task.stem,
        w,
        h,
        tuple(sprites),
        b"" if whole else _png(seg.background),
        n["WBC"],
        n["RBC"],
        n["PLT"],
        flags,
        "multi_wbc" not in flags and whole not in UNFIT_REASONS,
        seg.mask_counts,
    )


def segment_one(segmenter: Callable[..., Any], task: Task) -> ImageEntry:
    """Read, segment (the image's class given as the segmenter's hint) and encode one image."""
    rgb = read_rgb(task.path)
    return encode(task, rgb, segmenter(rgb, label=task.label))


def process(task: Task) -> ImageEntry:
    """Worker entry: `segment_one` with the process's segmenter."""
    assert _SEGMENTER is not None, "worker not initialised"
    return segment_one(_SEGMENTER, task)


# ---------------------------------------------------------------- main side


def order_sources(records: Sequence[Any]) -> list[Any]:
    """Round-robin over classes (each class in path order), so `--limit N` takes a spread of classes
    and a larger limit extends a smaller one."""
    by_class: dict[str, list[Any]] = defaultdict(list)
    for r in sorted(records, key=lambda r: r.path):
        by_class[r.cls].append(r)
    queues = [by_class[c] for c in sorted(by_class)]
    out: list[Any] = []
    for i in range(max((len(q) for q in queues), default=0)):
        out.extend(q[i] for q in queues if i < len(q))
    return out


def id_stems(paths: Sequence[str]) -> dict[str, str]:
    """Source path -> id stem: the file stem (shortened by fit_name to 200 bytes, so that the names made from it
    fit a file name), plus a short hash of the path where two stems collide."""
    stem = {p: fit_name(Path(p).stem, 200) for p in paths}
    stems = Counter(stem.values())
    return {
        p: stem[p] if stems[stem[p]] == 1 else f"{stem[p]}-{hashlib.sha1(p.encode()).hexdigest()[:6]}" for p in paths
    }


def ignored_device(backend: str, device: str) -> str:
    """The note for a --device that the resolved backend does not use ("" when it is used or left at auto)."""
    if device == "auto" or BACKENDS[backend].uses_device:
        return ""
    return f"note: --device {device} ignored: the {backend} backend runs on the CPU"


#: Said when `segment` reads every split of a prepared folder (its --split not given); `build`, which chooses the
#: split itself (and whose --split means the split fractions), leaves it out.
ALL_SPLITS_NOTE = (
    "note: segmenting every split; sprites from val/test images must not feed a clean build (use --split train)"
)


def check_bank_split(bank: Path, input_path: Path, split: str, sources: set[str], fix: str) -> None:
    """UserError (ending with `fix`) when the bank to resume holds images that are not among the `split` images
    of `input_path` now (records prepared again, e.g. with another seed): resumed, it would keep them, and
    composites made from a training bank would hold val/test images."""
    from naturalize.bank import Bank
    from naturalize.records import is_prepared, read_records

    stray = sorted({r["source"] for r in Bank.open(bank).curation} - sources)
    if not stray:
        return
    now = {r.path: r.split for r in read_records(input_path / "records.csv")} if is_prepared(input_path) else {}
    named = ", ".join(f"{p} (now {now.get(p) or 'not a ' + split + ' image'})" for p in stray[:3])
    raise UserError(
        f"{bank} holds {len(stray)} image(s) that are no {split} images of {input_path} now, e.g. {named}: its "
        f"records were prepared again (another seed, split or tree), and a resumed bank would keep them; {fix}"
    )


def bank_identity(name: str, options: Mapping[str, Any], input_path: Path, root: Path, split: str | None) -> dict:
    """What makes a bank: its backend and parameters, input, PBC root, split and the digest of the code that cuts it
    (bank.json; another identity is a bank "made with other settings")."""
    return {
        "code": code_digest(*SEGMENT_CODE),
        "backend": name,
        "parameters": BACKENDS[name].describe(**options),
        "input": str(input_path.resolve()),
        "root": str(root),
        "split": split or "",
    }


def check_cached_bank(
    prepared: Path, out: Path, split: str | None, backend: str, options: Mapping[str, Any], stale_fix: str
) -> None:
    """UserError ending with `stale_fix` when `segment(prepared, out, split, backend, **options)` would refuse `out`
    as a bank made with other settings; nothing when `out` is missing or would resume. Reads records, writes nothing
    (build checks its cached banks so before --overwrite removes the old dataset)."""
    from naturalize import records as rec

    name, resolved, _ = resolve_backend(backend, {"points_per_side": None, "params": None, **options})
    root, _ = rec.load_sources(prepared, split=split, classes=(), echo=lambda m: None, progress=False)
    BankWriter.check(out, bank_identity(name, resolved, prepared, root, split), False, stale_fix)


def segment(
    input_path: str | Path,
    out: str | Path,
    backend: str = "auto",
    checkpoint: str | None = None,
    model_type: str = "vit_b",
    device: str = "auto",
    classes: Sequence[str] = (),
    split: str | None = None,
    workers: int = 2,
    limit: int | None = None,
    overwrite: bool = False,
    points_per_side: int | None = None,
    backend_params: Mapping[str, Any] | None = None,
    sam_settings: Mapping[str, Any] | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    stale_fix: str = STALE_FIX,
) -> RunSummary:
    """Segment the sources of `input_path` into the bank `out` (see the module doc). `backend_params`
    sets further backend parameters (sam: SamParams fields such as pred_iou_thresh; classical:
    ClassicalParams fields); `sam_settings` (--sam-set) and `points_per_side` (--points) set SamParams fields and
    are refused by the classical backend. `stale_fix` ends the error line when `out` is a bank made with other
    settings."""
    from tqdm import tqdm

    from naturalize import records as rec

    if limit is not None and limit < 1:
        raise UserError(f"--limit {limit} must be at least 1")
    if workers < 1:
        raise UserError(f"--workers {workers} must be at least 1")
    name, options, why = resolve_backend(
        backend,
        {
            "checkpoint": checkpoint,
            "model_type": model_type,
            "device": device,
            "points_per_side": points_per_side,
            "params": backend_params,
            "sam_settings": sam_settings,
        },
    )
    echo(why)
    if note := ignored_device(name, device):
        echo(note)

    input_path = Path(input_path)
    check_disjoint(out, [("the input", input_path), ("the checkpoint", checkpoint)])
    claim(out, KIND, has_overwrite=True)  # a folder the tool does not own is refused before the input is read
    root, records = rec.load_sources(input_path, split=split, classes=tuple(classes), echo=echo, progress=progress)
    check_disjoint(out, [("the PBC root", root)])
    prepared = rec.is_prepared(input_path)
    if prepared and not split and len({r.split for r in records}) > 1:
        echo(ALL_SPLITS_NOTE)
    stems = id_stems([r.path for r in records])
    ordered = order_sources(records)[:limit] if limit else order_sources(records)

    spec = BACKENDS[name]
    identity = bank_identity(name, options, input_path, root, split)
    if BankWriter.check(out, identity, overwrite, stale_fix) == "resume" and split:  # refuse before any work or write
        split_records = records if not classes else rec.load_sources(input_path, split=split, progress=False)[1]
        check_bank_split(Path(out), Path(input_path), split, {r.path for r in split_records}, stale_fix)
    segmenter = None
    if not spec.parallel or workers == 1:
        if workers > 1:
            echo(f"note: the {name} backend segments in one process (one model in memory)")
        segmenter = spec.build(**options)  # a bad checkpoint fails here, before the bank is touched
    writer = BankWriter.open(out, identity, overwrite=overwrite, stems=set(stems.values()))
    if writer.left:
        echo(
            f"note: left {len(writer.left)} file(s) that segment did not write in {out}'s sprites/ and backgrounds/ "
            f"(not part of the bank), e.g. {writer.left[0]}"
        )

    todo = [Task(str(root / r.path), r.path, r.cls, stems[r.path]) for r in ordered if r.path not in writer.done]
    skipped = len(ordered) - len(todo)
    if skipped:
        echo(f"resuming {out}: {skipped} of {len(ordered)} images already done")
    bar = tqdm(total=len(todo), desc=f"segment ({name})", unit="img", disable=not progress)
    try:
        if segmenter is not None:
            for t in todo:
                writer.add(segment_one(segmenter, t))
                bar.update()
        elif todo:
            pool, procs = started(lambda: pool_context().Pool(min(workers, len(todo)), _init_worker, (name, options)))
            with pool:
                for entry in watched(pool, procs, process, todo, 4):  # a killed worker: WorkerDied
                    writer.add(entry)
                    bar.update()
    finally:
        bar.close()

    summary = RunSummary(name, Path(out), len(ordered), skipped, len(todo), writer.counts)
    from naturalize.segment.qc import write_qc

    summary.qc = write_qc(out, root)
    if warning := rejection_warning(summary, _missed_wbc(Path(out))):
        echo(warning)
    return summary


def _missed_wbc(bank: Path) -> tuple[int, int]:
    """(white-cell images of the bank in which no white cell was found, white-cell images): PLT images left out."""
    from naturalize.bank import Bank

    rows = [r for r in Bank.open(bank).curation if r["label"] != "PLT"]
    return sum("no_wbc" in r["flags"].split(";") for r in rows), len(rows)


#: `rejection_warning` speaks when the quality gate keeps fewer than this fraction of the cells found ...
MIN_KEPT_FRACTION = 0.1
#: ... or no white cell is found in more than this fraction of the white-cell images (classical backend on the
#: shared sample: 30 % of the cells kept, a white cell found in 95 % of the white-cell images).
MAX_MISSED_WBC_FRACTION = 0.5


def rejection_warning(s: RunSummary, missed_wbc: tuple[int, int]) -> str:
    """A `warning:` line when the bank is nearly useless (no cell found, nearly every cell rejected by the quality
    gate, or most white cells missed: a SAM checkpoint of random or wrong weights, thresholds unfit for the images),
    else "". `missed_wbc`: (white-cell images where none was found, white-cell images), see `_missed_wbc`."""
    c = s.counts
    found = sum(c.get("sprites", {}).values())
    kept = sum(per.get(PASS, 0) for per in c.get("gate", {}).values())
    missed, wbc_images = missed_wbc
    what = []
    if c.get("sources", 0) and not found:
        what.append(f"no cell was found in any of its {c['sources']} images")
    elif found and kept < MIN_KEPT_FRACTION * found:
        what.append(f"the quality gate kept {kept} of its {found} cells")
    if found and wbc_images and missed > MAX_MISSED_WBC_FRACTION * wbc_images:
        what.append(f"no white cell was found in {missed} of its {wbc_images} white-cell images")
    if not what:
        return ""
    hint = (
        "; check the checkpoint (real weights of --model-type?) and the SAM thresholds (docs/segmentation.md)"
        if s.backend == "sam"
        else ""
    )
    qc = f"look at {s.qc} " if s.qc else ""
    return f"warning: bank {s.out}: {' and '.join(what)}; {qc}before composing from it{hint}"


def format_summary(s: RunSummary) -> str:
    """A few lines for the terminal: images, sprites per kind, flags."""
    c = s.counts
    lines = [
        f"bank {s.out}: {c.get('sources', 0)} images ({s.written} segmented now, {s.skipped} already done), "
        f"{c.get('kept', 0)} kept, {c.get('backgrounds', 0)} backgrounds"
    ]
    lines.append("sprites " + ", ".join(f"{k} {c['sprites'].get(k, 0)} ({c['usable'].get(k, 0)} whole)" for k in KINDS))
    if c.get("flags"):
        lines.append("flags " + ", ".join(f"{k} {v}" for k, v in sorted(c["flags"].items())))
    if c.get("sources", 0) > c.get("kept", 0):
        lines.append(
            f"curation: {c['sources'] - c['kept']} images have keep=0 in curation.csv "
            f"(`naturalize build` leaves them out; the input is not modified)"
        )
    gate = c.get("gate", {})
    if gate:
        lines.append(
            "quality gate kept "
            + ", ".join(f"{k} {gate[k].get('ok', 0)}/{sum(gate[k].values())}" for k in KINDS if k in gate)
        )
    if c.get("masks"):
        lines.append(masks_line(c["masks"]))
    if s.qc is not None:
        lines.append(f"QC page: {s.qc}")
    return "\n".join(lines)


def masks_line(m: Mapping[str, Any]) -> str:
    """One line on bank.json's counts.masks (SAM: what its filters dropped before the quality gate)."""
    grid = ", ".join(f"{k} {n:,}" for k, n in m.get("grid_dropped", {}).items() if n)
    centre = ", ".join(f"{k} {n:,}" for k, n in m.get("centre_dropped", {}).items() if n)
    line = (
        f"masks before the gate: grid {m.get('grid_kept', 0):,} of {m.get('grid_masks', 0):,} passed on "
        f"({m.get('grid_prompts', 0):,} prompts; dropped: {grid or 'none'}), centre {m.get('centre_kept', 0):,} of "
        f"{m.get('images', 0):,} (dropped: {centre or 'none'})"
    )
    if "assign_kept" not in m:  # a bank cut before assign's drops were counted
        return line
    assign = ", ".join(f"{k} {n:,}" for k, n in m.get("assign_dropped", {}).items() if n)
    return f"{line}; cells {m['assign_kept']:,} of those (dropped: {assign or 'none'})"
