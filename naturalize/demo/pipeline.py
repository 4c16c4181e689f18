"""`naturalize demo`: the whole pipeline on a small data set, in a few minutes, ending in report.html.

    draw (or --pbc: a per-class subset of a real PBC tree) -> prepare -> segment (classical, train
    split) -> build (clean protocol; composes each augmented class once, from that bank) -> train
    custom_cnn (small images, few epochs) -> evaluate (test split) -> sheets -> OUT/report.html

Every stage calls the library function its command uses (naturalize.prepare.prepare,
naturalize.segment.run.segment, naturalize.build.build, classify.train.train,
classify.evaluate.evaluate_run). Layout of OUT:

    OUT/drawn-pbc/ or OUT/pbc-subset/   the input tree (drawn images, or links to the real subset)
    OUT/work/prepared, OUT/work/bank-*  records and sprite banks (shared with the build stage)
    OUT/dataset/                        the clean-protocol dataset tree, dataset.json; dataset/synthetic/: the
                                        Naturalize images, manifest.jsonl, COCO annotations.json
    OUT/run/                            the trained classifier, curves.png, eval/test/
    OUT/figures/                        segmentation and contact sheets shown in the report
    OUT/demo.json                       settings, per-stage timings; OUT/report.html
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

import numpy as np

from naturalize.build import build
from naturalize.classes import AUGMENTED_CLASSES, CLASSES, RELEASE_DIRNAME, class_of_prefix
from naturalize.demo.report import ReportData, write_report
from naturalize.demo.sheets import contact_sheet_name, pair_sheet, segmentation_sheets, written_by_sheets
from naturalize.drawn import DRAWN_DIRNAME, write_drawn_release
from naturalize.fsio import UserError, link_or_copy, temp_target, write_json
from naturalize.outputs import (
    MARKER,
    check_disjoint,
    claim,
    claim_settled,
    not_owned,
    read_marker,
    read_record,
    refuse_foreign,
)
from naturalize.paths import is_image_name, subdirs
from naturalize.prepare import prepare
from naturalize.records import detect_layout

SPLIT = (0.7, 0.15, 0.15)  # val/test keep a few images per class even after curation
MODEL = "custom_cnn"
KIND = "demo"  # the output marker's kind (naturalize.outputs)


@dataclass(frozen=True)
class DemoSize:
    """How big the demo runs: images per class, Naturalize images per augmented class, training."""

    per_class: int  # drawn images per class
    pbc_per_class: int  # real images per class with --pbc (real images lose some to curation)
    synthetic: int
    image_size: int
    epochs: int
    batch_size: int
    lr: float = 1e-3


SIZES: dict[str, DemoSize] = {
    # small: 20 epochs (8 left the model at chance: test accuracy 0.091; 20 gave 0.64 on the drawn data)
    "small": DemoSize(per_class=12, pbc_per_class=24, synthetic=12, image_size=64, epochs=20, batch_size=16),
    "default": DemoSize(per_class=40, pbc_per_class=60, synthetic=40, image_size=80, epochs=15, batch_size=32),
}


@dataclass
class StageLog:
    """The demo's stages, run one after another: `stage` prints each one's header line, `[k/total] name: note`
    (numbered in run order) through `echo`, and `rows` keeps its wall time in seconds and note, in run order."""

    echo: Callable[[str], None]
    total: int
    rows: list[tuple[str, float, str]] = field(default_factory=list)

    @contextmanager
    def stage(self, name: str, note: str) -> Iterator[None]:
        self.echo(f"[{len(self.rows) + 1}/{self.total}] {name}: {note}")
        t0 = time.perf_counter()
        yield
        self.rows.append((name, time.perf_counter() - t0, note))


def _pbc_images(pbc_root: Path) -> tuple[str, Path, dict[str, list[Path]]]:
    """A PBC tree's (layout, data root, image files per class); UserError for a train/val/test tree or no image."""
    layout, data_root = detect_layout(Path(pbc_root))
    if layout == "split":
        raise UserError(
            f"--pbc {pbc_root} is a train/val/test tree; give the release folder ({RELEASE_DIRNAME}/) "
            f"or a one-folder-per-class tree so the demo can split it itself"
        )
    by_class: dict[str, list[Path]] = {c: [] for c in CLASSES}
    for folder in subdirs(data_root):
        for f in sorted(folder.iterdir()):
            cls = folder.name.upper() if layout == "classes" else class_of_prefix(f.name)
            if f.is_file() and cls in by_class and is_image_name(f):
                by_class[cls].append(f)
    if all(not fs for fs in by_class.values()):
        raise UserError(f"--pbc {pbc_root}: no PBC images found; point to the folder holding {RELEASE_DIRNAME}/")
    return layout, data_root, by_class


def real_subset(pbc_root: Path, out: Path, per_class: int, seed: int) -> Path:
    """Link `per_class` images of each class (seeded choice) from a PBC release tree into OUT (release layout).

    Only the release layout (8 folders, class = file-name prefix) and one-folder-per-class trees are
    accepted; files are symlinked (copied where links are not allowed). Returns OUT.
    """
    layout, data_root, by_class = _pbc_images(pbc_root)
    if out.exists():
        if foreign := _not_linked_here(out, data_root, {f.name for fs in by_class.values() for f in fs}):
            raise UserError(
                f"{foreign[0]} was not written by naturalize demo ({len(foreign)} such file(s) in {out}, which the "
                f"demo makes again); nothing was removed: move them out of {out}, then rerun"
            )
        shutil.rmtree(out)  # only our links (or copies) of PBC images: rmtree never follows a link
    rng = np.random.default_rng(seed)
    for cls, files in by_class.items():
        pick = sorted(rng.permutation(len(files))[:per_class]) if files else []
        for k in pick:
            src = files[k]
            dst = out / (src.parent.name if layout == "release" else cls) / src.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            link_or_copy(src, dst, symbolic=True)
    return out


def _not_linked_here(out: Path, data_root: Path, names: set[str]) -> list[Path]:
    """What folder `out` (a subset real_subset made earlier) holds that real_subset did not put there: anything but
    <folder>/<name> entries that are links into `data_root` or plain files (copies, where links fail) named as
    one of its images (`names`); sorted."""
    root = data_root.resolve()
    found = []
    for p in sorted(out.rglob("*")):
        if p.is_dir() and not p.is_symlink():
            continue
        top = len(p.relative_to(out).parts) == 2
        if p.is_symlink():
            ours = top and Path(os.readlink(p)).is_relative_to(root)
        else:
            ours = top and p.name in names
        if not ours:
            found.append(p)
    return found


#: What the demo writes in its --out (and all that --overwrite removes there). `compose`: the demo composed into
#: OUT/compose/ (compose's own output, with its marker) until 2026-11-29; it now composes once, inside build's
#: dataset/synthetic/. A demo folder of then may still hold it, so --overwrite removes it, judged by compose's rule.
OUTPUTS = (
    "cache",
    "compose",
    "dataset",
    "demo.json",
    "figures",
    "pbc-subset",
    "report.html",
    "run",
    "work",
    "drawn-pbc",
)
SUBSET = "pbc-subset"  # real_subset's links: judged by _not_linked_here (every link is foreign to not_owned)

#: The folders inside OUT that a nested command writes as its own output (pattern -> the kind of its marker).
NESTED = {
    "drawn-pbc": "drawn",
    "work/prepared": "prepared",
    "work/bank-*": "bank",
    "dataset": "dataset",
    "run": "classify-run",
    "compose": "compose",
}


def _written_by_classify(rel: str) -> bool:
    """Whether `rel`, a file's path inside a classify run ('eval/test/report.json'), is one classify wrote there:
    train's files, evaluate's in eval/<name>/, explain's PNGs in explain/."""
    from classify.evaluate import written_by_evaluate
    from classify.runs import written_by_train
    from classify.scorecam import written_by_explain

    top, _, inner = rel.partition("/")
    if top == "eval":
        return "/" in inner and written_by_evaluate(inner.rpartition("/")[2])
    if top == "explain":
        return written_by_explain(inner)
    return written_by_train(rel)


def _kind_rules() -> dict[str, Callable[[Path], Callable[[str], bool]]]:
    """Each nested kind's own rule: its folder -> (a file's path inside it -> whether that command wrote it)."""
    from naturalize.bank.files import written_by_segment
    from naturalize.build import written_by_build
    from naturalize.compose.run import written_by_compose
    from naturalize.drawn import written_by_drawing
    from naturalize.prepare import tree_names

    return {
        "drawn": lambda _: written_by_drawing,
        "prepared": lambda folder: tree_names(folder).__contains__,
        "bank": lambda _: written_by_segment,
        "dataset": written_by_build,
        "classify-run": lambda _: _written_by_classify,
        "compose": lambda _: written_by_compose,
    }


def written_by_demo(out: Path) -> Callable[[str], bool]:
    """Whether a file's path inside demo OUT ('run/eval/test/report.json') is one the demo wrote there. In a NESTED
    folder that carries the marker of its kind: a top-level file its marker lists (or the marker, or the temporary
    file of either), any file that kind's rule accepts; such a folder without that marker holds nothing of ours.
    In figures/ and cache/: the sheets (written_by_sheets) and classify's image cache (written_by_cache). Nothing
    else (work/notes.txt) is ours. pbc-subset/ is judged apart (_not_linked_here)."""
    from classify.images import written_by_cache

    rules = _kind_rules()
    plain = {"figures": written_by_sheets, "cache": written_by_cache}
    judges: dict[str, Callable[[str], bool]] = {}

    def judge(head: str, kind: str) -> Callable[[str], bool]:
        if head not in judges:
            try:
                meta = read_marker(out / head)
            except UserError:  # a damaged marker: nothing in that folder is known to be ours
                meta = None
            if meta is None or meta.get("kind") != kind:
                judges[head] = lambda rel: False
            else:
                rule, listed = rules[kind](out / head), {*meta["written"], MARKER}
                judges[head] = lambda rel: rule(rel) or ("/" not in rel and (temp_target(rel) or rel) in listed)
        return judges[head]

    def owned(rel: str) -> bool:
        parts = rel.split("/")
        for k in range(1, len(parts)):
            head = "/".join(parts[:k])
            kind = next((kind for pattern, kind in NESTED.items() if fnmatchcase(head, pattern)), None)
            if kind is not None:
                return judge(head, kind)("/".join(parts[k:]))
        rule = plain.get(parts[0])
        return rule is not None and len(parts) > 1 and rule("/".join(parts[1:]))

    return owned


def foreign_files(out: Path) -> list[Path]:
    """What the folders of demo OUT that --overwrite removes hold that the demo did not write (written_by_demo; in
    pbc-subset/, anything but its links into the PBC tree of the demo.json settings: _not_linked_here), links
    included (never followed); sorted."""
    meta = read_marker(out)
    written = meta["written"] if meta else []
    pbc = ((read_record(out / "demo.json") or {}).get("settings") or {}).get("pbc")
    owned = written_by_demo(out)
    names = [n for n in written if "/" not in n and n not in ("", ".", "..", SUBSET)]
    found = [p for p in not_owned(out, names, owned) if not _linked_by_build(p, out, owned, pbc)]
    subset = out / SUBSET
    if SUBSET in written and subset.is_dir() and not subset.is_symlink():
        found += _subset_foreign(subset, pbc)
    return sorted(found)


def _linked_by_build(path: Path, out: Path, owned: Callable[[str], bool], pbc: object) -> bool:
    """Whether `path` is a link that build made in the dataset of a `demo --pbc` before fsio.link_or_copy linked
    the files pbc-subset/'s links point to (it linked the links): a dataset file build lists, a link into the PBC
    tree `pbc` (demo.json's settings)."""
    rel = path.relative_to(out).as_posix()
    if not (isinstance(pbc, str) and rel.startswith("dataset/") and path.is_symlink() and owned(rel)):
        return False
    return Path(os.readlink(path)).is_relative_to(Path(pbc).resolve())


def _subset_foreign(subset: Path, pbc: object) -> list[Path]:
    """What pbc-subset/ holds that real_subset did not link there from the PBC tree `pbc` (the path demo.json's
    settings name): _not_linked_here. When that tree is gone, its links (now dangling) are still ours, copies not."""
    if not isinstance(pbc, str):  # no record of the tree it was linked from: nothing there is known to be ours
        return sorted(p for p in subset.rglob("*") if p.is_symlink() or not p.is_dir())
    root, images = Path(pbc), set()
    try:
        _, root, by_class = _pbc_images(root)
        images = {f.name for fs in by_class.values() for f in fs}
    except UserError:
        pass
    return _not_linked_here(subset, root, images)


def _check_out(out: Path, settings: dict, overwrite: bool, pbc: Path | None) -> None:
    """--out lies outside --pbc and is new, empty or an earlier demo (same settings resume; --overwrite removes
    what the demo wrote, nothing else: refused, with nothing removed, while a folder it would remove holds a file
    the demo did not write or a link: foreign_files); then it gets the demo marker."""
    check_disjoint(out, [("the --pbc download", pbc)])
    if overwrite and claim(out, KIND, has_overwrite=True) == "ours":
        refuse_foreign(foreign_files(out), out, "naturalize demo")
    claim_settled(
        out,
        KIND,
        OUTPUTS,
        record="demo.json",
        differs=lambda old: old.get("settings") is not None and old.get("settings") != settings,
        overwrite=overwrite,
        refusal=f"{out} holds a demo with other settings; pass --overwrite to replace it (only what the "
        f"demo wrote there is removed) or choose another --out",
    )


def epoch_bar(epochs: int, progress: bool):
    """A Keras callback showing one tqdm bar over the epochs (Keras' own output is off when not a TTY)."""
    import keras
    from tqdm import tqdm

    class EpochBar(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.bar = tqdm(total=epochs, desc="train", unit="epoch", disable=not progress)

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            self.bar.n = epoch + 1
            self.bar.set_postfix(acc=f"{logs.get('accuracy', 0):.3f}", val_acc=f"{logs.get('val_accuracy', 0):.3f}")
            self.bar.refresh()

        def on_train_end(self, logs=None):
            self.bar.close()

    return EpochBar()


def run_demo(
    out: str | Path = "naturalize-demo",
    pbc: str | Path | None = None,
    size: str = "default",
    seed: int = 0,
    workers: int = 2,
    overwrite: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> Path:
    """Run the demo into `out` and return the path of report.html (see the module doc)."""
    if size not in SIZES:
        raise UserError(f"unknown --size {size!r}; use one of {', '.join(SIZES)}")
    sz = SIZES[size]
    out = Path(out).absolute()
    settings = {
        "pbc": str(Path(pbc).resolve()) if pbc else None,
        "size": size,
        "seed": seed,
        **asdict(sz),
        "model": MODEL,
        "split": list(SPLIT),
        "protocol": "clean",
        "augmented": list(AUGMENTED_CLASSES),
    }
    if pbc is not None:
        detect_layout(Path(pbc))  # a bad --pbc fails here, before OUT is touched
    _check_out(out, settings, overwrite, Path(pbc) if pbc is not None else None)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "demo.json", {"settings": settings, "timings": [], "done": False})
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter hides the progress bars
    old_cache = os.environ.get("CLASSIFY_CACHE")
    os.environ["CLASSIFY_CACHE"] = str((out / "cache").resolve())
    try:
        return _run(out, pbc, sz, settings, seed, workers, progress, echo)
    finally:
        if old_cache is None:
            os.environ.pop("CLASSIFY_CACHE", None)
        else:
            os.environ["CLASSIFY_CACHE"] = old_cache


def _run(
    out: Path, pbc, sz: DemoSize, settings: dict, seed: int, workers: int, progress: bool, echo: Callable[[str], None]
) -> Path:
    from naturalize.segment.run import format_summary, segment

    log = StageLog(echo, total=8)
    quiet = lambda *_a, **_k: None  # noqa: E731  (library chatter; the stage lines say what happens)
    work = out / "work"
    if pbc is None:
        data_root = out / DRAWN_DIRNAME
        with log.stage("draw", f"{sz.per_class} procedurally drawn images per class (NOT real cells)"):
            write_drawn_release(data_root, sz.per_class, seed=seed, progress=progress, workers=workers)
        data_kind = "drawn"
    else:
        data_root = out / "pbc-subset"
        with log.stage("subset", f"{sz.pbc_per_class} real images per class from {pbc}"):
            real_subset(Path(pbc), data_root, sz.pbc_per_class, seed)
        data_kind = "real"

    prepared = work / "prepared"
    with log.stage("prepare", f"records + stratified {'/'.join(str(int(f * 100)) for f in SPLIT)} split"):
        summary = prepare(
            data_root, prepared, seed=seed, fractions=SPLIT, workers=workers, overwrite=True, progress=progress
        )
    bank = work / "bank-train"
    with log.stage("segment", "classical backend, train split only (no test image feeds a synthetic one)"):
        seg = segment(
            prepared, bank, backend="classical", split="train", workers=workers, progress=progress, echo=quiet
        )
    echo("  " + format_summary(seg).replace("\n", "\n  "))
    dataset = out / "dataset"
    with log.stage(
        "build",
        f"composes {sz.synthetic} Naturalize images each for {', '.join(AUGMENTED_CLASSES)} "
        "from the training bank; clean protocol: synthetic images in train only",
    ):
        # build reuses the prepared records and bank-train above (same work folder) and composes once
        meta = build(
            "custom",
            data_root,
            dataset,
            protocol="clean",
            seed=seed,
            fractions=SPLIT,
            backend="classical",
            classes=AUGMENTED_CLASSES,
            per_class=sz.synthetic,
            workers=workers,
            work=work,
            overwrite=True,
            progress=progress,
            echo=quiet,
        )
    syn = {c: sorted((dataset / "synthetic" / c).glob("*_syn_*")) for c in AUGMENTED_CLASSES}
    run = out / "run"
    with log.stage("train", f"{MODEL}, {sz.image_size}px, {sz.epochs} epochs, weights none"):
        from classify.train import train

        train(
            dataset,
            MODEL,
            run,
            weights="none",
            epochs=sz.epochs,
            batch_size=sz.batch_size,
            lr=sz.lr,
            image_size=sz.image_size,
            seed=seed,
            evaluate=False,
            progress=progress,
            callbacks=[epoch_bar(sz.epochs, progress)],
            workers=workers,
            log=quiet,
        )
    with log.stage("evaluate", "best model on the test split (no synthetic image in it)"):
        from classify.evaluate import evaluate_run

        result = evaluate_run(run, "test", progress=progress)
    with log.stage("sheets", "segmentation sheets; source training images beside Naturalize images"):
        seg_sheets = segmentation_sheets(bank, out / "figures")
        from naturalize.bank import Bank

        pbc_root = Path(Bank.open(bank).meta["root"])  # the manifest's sources are relative to it
        sheets = contact_sheets(out / "figures", dataset, syn, "drawn" if pbc is None else "real", pbc_root)
    with log.stage("report", "report.html"):
        report = _write_report(
            out, data_kind, data_root, meta, summary, seg, seg_sheets, sheets, run, result, log, settings
        )
    write_json(
        out / "demo.json",
        {
            "settings": settings,
            "done": True,
            "report": "report.html",
            "timings": [{"stage": s, "seconds": round(t, 2), "note": n} for s, t, n in log.rows],
            "test_accuracy": result["accuracy"],
            "test_macro_f1": result["report"]["macro avg"]["f1-score"],
        },
    )
    echo(
        f"test accuracy {result['accuracy']:.3f}, macro-F1 {result['report']['macro avg']['f1-score']:.3f} "
        f"({'drawn data: says nothing about real cells' if data_kind == 'drawn' else 'real test images'})"
    )
    echo(f"total {sum(t for _, t, _ in log.rows):.0f}s; report: {report.resolve()}")
    return report


def contact_sheets(
    fig_dir: Path, dataset: Path, synthetic: dict[str, list[Path]], source: str, data_root: Path
) -> list[tuple[str, Path]]:
    """One PNG per augmented class: up to 6 Naturalize images (bottom row) under the training images their white
    cells were cut from (top row, `source`: drawn or real; paths from the manifest, relative to `data_root`), so
    each column shows one image beside its source. (The first 6 training images of the class stood above them,
    captioned as their sources: they were not.)"""
    manifest = dataset / "synthetic" / "manifest.jsonl"
    records = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    centre = {  # synthetic file (relative to synthetic/) -> the source of its white cell
        r["file"]: next(c["source"] for c in r["cells"] if c.get("centre")) for r in records
    }
    sheets = []
    for cls, syn in synthetic.items():
        bottom = sorted(syn)[:6]
        top = [data_root / centre[p.relative_to(dataset / "synthetic").as_posix()] for p in bottom]
        png = fig_dir / contact_sheet_name(cls)
        title = f"{cls}: Naturalize images (bottom) under the {source} images their white cells came from (top)"
        pair_sheet(top, bottom, png, title)
        sheets.append(
            (
                f"{cls}: each Naturalize image (bottom row) under the {source} training image its white cell was cut "
                "from (top row); the plate, red cells and platelets around it are another (donor) training image's",
                png,
            )
        )
    return sheets


def source_word(data_kind: str) -> str:
    """'drawn' or 'real': what the demo's source images are."""
    return "drawn" if data_kind == "drawn" else "real"


def _machine() -> str:
    """One line: CPU count and load average (other jobs on the machine slow every stage down)."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return f"{platform.platform()}, {os.cpu_count()} CPUs, load average (1, 5, 15 min) {load}"


def _write_report(
    out: Path,
    data_kind: str,
    data_root: Path,
    meta: dict,
    summary: dict,
    seg,
    seg_sheets: dict,
    sheets,
    run: Path,
    result: dict,
    log: StageLog,
    settings: dict,
) -> Path:
    if data_kind == "drawn":
        note = (
            f"Procedurally drawn images ({data_root.name}/, see its README.txt): the project ships no PBC "
            f"images, so the demo draws stand-ins with numpy/OpenCV. They are NOT real blood cells. Run "
            f"`naturalize demo --pbc PBC_ROOT` on a PBC download for real images."
        )
    else:
        note = (
            f"Real PBC images: {settings['pbc_per_class']} per class linked from {settings['pbc']} "
            f"(Acevedo et al. 2020, doi:10.17632/snkd93bnjr.1, CC BY 4.0)."
        )
    counts = {s: {c: v for c, v in per.items() if sum(v.values())} for s, per in meta["counts"].items()}
    rep = result["report"]
    n_test = int(rep["macro avg"]["support"])
    caveat = (
        "drawn images: it shows the pipeline runs, not how a model does on real cells"
        if data_kind == "drawn"
        else f"only {n_test} test images: a few images move it by whole points"
    )
    metrics = [
        (
            "test accuracy",
            result["accuracy"],
            f"share of the {n_test} test images whose class was predicted right (chance with "
            f"{len(counts.get('test', {}))} classes: {1 / max(1, len(counts.get('test', {}))):.3f}); {caveat}",
        ),
        (
            "test loss",
            result["loss"],
            "mean cross-entropy on the test images (lower = more confident and right); "
            "not comparable across datasets or class counts",
        ),
        (
            "test macro-F1",
            rep["macro avg"]["f1-score"],
            "mean of the per-class F1 scores, every class weighing the "
            "same (rare classes count fully); not a per-class guarantee",
        ),
        (
            "test weighted-F1",
            rep["weighted avg"]["f1-score"],
            "per-class F1 weighted by test images per class; frequent classes dominate it",
        ),
    ]
    flags = seg.counts.get("flags", {})
    usable = seg.counts.get("usable", {})
    curation = [
        ("training images segmented", seg.counts.get("sources", 0), "every training image was cut into cells once"),
        (
            "kept",
            seg.counts.get("kept", 0),
            "images that stay in the dataset: all but those curation removes (below); those with one white "
            "cell give sprites and plates; not a check that the cell was cut perfectly",
        ),
        (
            "removed: more than one white cell (multi_wbc)",
            flags.get("multi_wbc", 0),
            "not a clean example of one class, so curation drops the image from every split",
        ),
        (
            "flagged: a white cell cut by the border (wbc_cut)",
            flags.get("wbc_cut", 0),
            "usually the second cell of a multi_wbc image; border-cut cells are never composited",
        ),
        (
            "flagged: no white cell found (no_wbc)",
            flags.get("no_wbc", 0),
            "normal for platelet images; for a white-cell class it means the cell was missed",
        ),
        (
            "usable red-cell sprites",
            usable.get("RBC", 0),
            "whole, single, typically shaped red cells the compositor may place; clumps and fragments are not counted",
        ),
        ("usable white-cell sprites", usable.get("WBC", 0), "whole white cells, labelled with their image's class"),
        ("usable platelet sprites", usable.get("PLT", 0), "whole platelets off the image border"),
    ]
    segmentation = [
        (
            "Training images (top) and the cell-free plates made from them (bottom): every cell is "
            "inpainted away; composites are painted on these plates.",
            seg_sheets["plates"],
        ),
        (
            "Usable sprites per kind, evenly spread over the bank, shown on white: what the compositor may "
            "place. A sprite in the wrong row is a segmentation error.",
            seg_sheets["sprites"],
        ),
    ]
    if "rejected" in seg_sheets:
        segmentation.append(
            (
                "Training images curation removed, with the reason (a second white cell, often cut by the border).",
                seg_sheets["rejected"],
            )
        )
    data = ReportData(
        title=f"Naturalize demo ({'drawn' if data_kind == 'drawn' else 'real'} data, size {settings['size']})",
        data_kind=data_kind,
        data_note=note,
        counts=counts,
        sheets=sheets,
        curves=[
            (
                "Accuracy and loss per epoch, train and val; the dashed line marks the best epoch by val accuracy, "
                "the model that was kept and evaluated.",
                run / "curves.png",
            )
        ],
        confusion=[
            (
                f"Rows: true class, columns: predicted, on the {n_test} test images ({source_word(data_kind)} "
                f"images only, no Naturalize image). Left: counts; right: each row divided by its total (the "
                f"diagonal is each class's recall).",
                run / "eval" / "test" / "confusion.png",
            )
        ],
        classification_report=rep,
        metrics=metrics,
        timings=log.rows,
        segmentation=segmentation,
        curation=curation,
        settings={
            "model": f"{MODEL}, {settings['image_size']}px, {settings['epochs']} epochs, batch "
            f"{settings['batch_size']}, weights none",
            "images per class": str(settings["per_class" if data_kind == "drawn" else "pbc_per_class"]),
            "Naturalize images per augmented class": f"{settings['synthetic']} ({', '.join(AUGMENTED_CLASSES)})",
            "sprites (train split)": ", ".join(f"{k} {v}" for k, v in seg.counts.get("usable", {}).items()),
            "seed": str(settings["seed"]),
            "protocol": "clean",
        },
        machine=_machine(),
    )
    return write_report(data, out / "report.html")
