"""The `naturalize` command line: thin wrappers that parse options and call the library.

Heavy imports (torch, segment-anything, tensorflow) happen inside the commands that need them,
so `naturalize --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

from naturalize.classes import normalize_class, parse_classes
from naturalize.clihelp import (
    calm_openmp,
    check_seed,
    check_workers,
    examples,
    new_app,
    quiet_tensorflow,
    run_app,
    version_option,
)
from naturalize.compose.params import (
    PLACING_SCENE,
    ComposeParams,
    parse_range,
    parse_shard,
    parse_size,
    scene_help,
    scenes_using,
)
from naturalize.fetch import model_type_help
from naturalize.fsio import UserError
from naturalize.protocols import DEFAULT as DEFAULT_PROTOCOL
from naturalize.protocols import protocol_help
from naturalize.recipes import recipe_names
from naturalize.segment import backend_help
from naturalize.segment.sam import parse_settings, settings_help

#: The defaults of the compose options (`compose`, `build`) are ComposeParams's fields (one source).
_COMPOSE = ComposeParams()

app = new_app(
    "Naturalize: PBC records, SAM sprite banks, realistic synthetic blood-smear images and datasets.",
    "naturalize demo",
    "naturalize build 2k-pbc --pbc ~/data/PBC --out datasets/2k-pbc",
)


@app.callback()
def _root(version: bool = version_option("naturalize")) -> None:
    """Naturalize: PBC records, sprite banks, realistic synthetic blood-smear images and datasets.

    Every command has --help with examples; bad input stops with one `error:` line and exit code 2.
    """


def _parse_split(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 0 or abs(sum(parts) - 1) > 1e-6 or parts[0] <= 0:
        raise UserError(f"--split {text!r} is not three fractions train,val,test summing to 1 (e.g. 0.8,0.1,0.1)")
    return parts  # type: ignore[return-value]


#: --model-type and --device of segment and build (one text, so the two commands read alike; fetch-sam lists the
#: same model types, with their download sizes).
MODEL_TYPE_HELP = f"SAM model type of the checkpoint: {model_type_help()}."
DEVICE_HELP = "SAM device: auto | cpu | cuda (the classical backend runs on the CPU)."
SAM_SET_HELP = (
    "SAM prompt or filter setting NAME=VALUE, repeatable (docs/segmentation.md: thresholds to try); "
    f"names: {settings_help()}. Refused with the classical backend."
)


def _classes(text: str | None) -> tuple[str, ...]:
    """--classes 'bne,PMY' -> ('BNE', 'PMY'); UserError naming the unknown code."""
    try:
        return parse_classes(text)
    except ValueError as e:
        raise UserError(f"--classes: {e}") from None


@app.command(
    epilog=examples(
        "naturalize prepare ~/data/PBC --out prepared",
        "naturalize prepare ~/data/PBC --out prepared-small --per-class 50 --materialize",
    )
)
def prepare(
    pbc_root: Path = typer.Argument(
        ..., help="A PBC download: the release's 8 folders, an 11-class tree, or a train/val/test tree."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Directory for records.csv, dropped.csv and summary.json (must not lie inside PBC_ROOT)."
    ),
    seed: int = typer.Option(0, callback=check_seed, help="Seed of the stratified split."),
    split: str = typer.Option("0.8,0.1,0.1", help="Train,val,test fractions (ignored for a train/val/test tree)."),
    materialize: bool = typer.Option(False, help="Also lay out OUT/<split>/<CLASS>/ (hard links, else copies)."),
    per_class: int | None = typer.Option(None, help="Keep at most N images per class (seeded), for quick runs."),
    workers: int = typer.Option(2, callback=check_workers, help="Processes that read and hash images."),
    overwrite: bool = typer.Option(False, help="Replace an existing prepared directory."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Index a PBC tree into labelled, de-duplicated, split records (records.csv, summary.json)."""
    from naturalize import prepare as prep

    summary = prep.prepare(
        pbc_root,
        out,
        seed=seed,
        fractions=_parse_split(split),
        materialize=materialize,
        workers=workers,
        overwrite=overwrite,
        per_class=per_class,
        progress=progress,
    )
    typer.echo(prep.format_table(summary))
    typer.echo(f"wrote {out / 'records.csv'} and {out / 'summary.json'}")


@app.command(
    epilog=examples(
        "naturalize segment prepared --out bank --split train --backend classical",
        "naturalize segment prepared --out bank-sam --split train "
        "--checkpoint ~/.cache/naturalize/sam/sam_vit_h_4b8939.pth "
        "--model-type vit_h --device cuda",
    )
)
def segment(
    source: Path = typer.Argument(
        ..., help="A PBC tree (release, 11-class or train/val/test) or a `naturalize prepare` directory."
    ),
    out: Path = typer.Option(
        Path("bank"),
        "--out",
        help="Sprite bank directory (created, resumed, or replaced with --overwrite); "
        "`compose` reads ./bank by default.",
    ),
    backend: str = typer.Option("auto", help=backend_help()),
    checkpoint: Path | None = typer.Option(
        None,
        help="SAM checkpoint .pth (get one with `naturalize fetch-sam vit_b`).",
        show_default="$NATURALIZE_SAM_CHECKPOINT, else none",
    ),
    model_type: str = typer.Option("vit_b", help=MODEL_TYPE_HELP),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    points: int | None = typer.Option(
        None, help="SAM: point prompts per image side for red cells and platelets.", show_default="16"
    ),
    sam_set: list[str] | None = typer.Option(
        None, "--sam-set", metavar="NAME=VALUE", help=SAM_SET_HELP, show_default="SamParams' defaults"
    ),
    classes: str | None = typer.Option(
        None, help="Only these classes, e.g. BNE,MMY,MY,PMY,SNE.", show_default="all 11"
    ),
    split: str | None = typer.Option(
        None,
        help="Only this split (train|val|test) of a prepared directory or train/val/test tree.",
        show_default="every split",
    ),
    workers: int = typer.Option(2, callback=check_workers, help="Processes segmenting images (classical backend)."),
    limit: int | None = typer.Option(None, help="Only the first N images (classes taken in turn).", show_default="all"),
    overwrite: bool = typer.Option(False, help="Replace an existing bank made with other settings."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Cut PBC images into a sprite bank: RGBA cell sprites, cell-free backgrounds, curation.csv."""
    from naturalize.segment import run

    summary = run.segment(
        source,
        out,
        backend=backend,
        checkpoint=str(checkpoint) if checkpoint else None,
        model_type=model_type,
        device=device,
        classes=_classes(classes),
        split=split,
        workers=workers,
        limit=limit,
        overwrite=overwrite,
        points_per_side=points,
        sam_settings=parse_settings(sam_set or []),
        progress=progress,
        echo=lambda m: typer.echo(m, err=True),
    )
    typer.echo(run.format_summary(summary))


@app.command("fetch-sam", epilog=examples("naturalize fetch-sam vit_b", "naturalize fetch-sam vit_h --dir /shared/sam"))
def fetch_sam(
    model_type: str = typer.Argument(..., help=model_type_help(sizes=True) + "."),
    dir: Path | None = typer.Option(
        None, "--dir", help="Target folder.", show_default="$NATURALIZE_SAM_DIR or ~/.cache/naturalize/sam"
    ),
    url: str | None = typer.Option(
        None,
        help="Download from this URL instead (a mirror).",
        show_default="$NATURALIZE_SAM_URL/<file>, else Meta's server",
    ),
    sha256: str | None = typer.Option(
        None, help="Expected SHA-256 of the file (instead of the official MD5).", show_default="none"
    ),
    md5: str | None = typer.Option(None, help="Expected MD5 of the file.", show_default="the official one"),
    overwrite: bool = typer.Option(False, help="Download again even if the file is there."),
) -> None:
    """Download an official segment-anything checkpoint with a progress bar and verify its checksum."""
    from naturalize import fetch

    path, downloaded = fetch.fetch_sam(model_type, dir, url=url, sha256=sha256, md5=md5, overwrite=overwrite)
    typer.echo(f"{'downloaded' if downloaded else 'already there, checksum ok:'} {path}")
    typer.echo(f"use it with: naturalize segment PBC_ROOT --out BANK --checkpoint {path} --model-type {model_type}")


@app.command(
    epilog=examples(
        "naturalize build 2k-pbc --pbc ~/data/PBC --out datasets/2k-pbc",
        "naturalize build 2k-pbc --pbc ~/data/PBC --out datasets/2k-pbc-paper --protocol paper --scene paper",
        "naturalize build custom --pbc ~/data/PBC --classes PMY,MY --per-class 500 --scene paper "
        "--rbc 10 --platelets 1..3",
    )
)
def build(
    recipe: str = typer.Argument(..., help=recipe_names() + "."),
    pbc: Path = typer.Option(..., "--pbc", help="The PBC download (any layout `naturalize prepare` reads)."),
    out: Path | None = typer.Option(
        None, help="Dataset folder.", show_default="$NATURALIZE_DATA/RECIPE, else ./datasets/RECIPE"
    ),
    protocol: str = typer.Option(DEFAULT_PROTOCOL, help=protocol_help()),
    seed: int = typer.Option(0, callback=check_seed, help="Seed of the split and of every composed image."),
    split: str = typer.Option("0.8,0.1,0.1", help="Train,val,test fractions."),
    backend: str = typer.Option("auto", help="Segmentation backend: " + backend_help()),
    checkpoint: str | None = typer.Option(
        None, help="SAM checkpoint (.pth).", show_default="$NATURALIZE_SAM_CHECKPOINT, else none"
    ),
    model_type: str = typer.Option("vit_b", help=MODEL_TYPE_HELP),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    sam_set: list[str] | None = typer.Option(
        None, "--sam-set", metavar="NAME=VALUE", help=SAM_SET_HELP, show_default="SamParams' defaults"
    ),
    classes: str | None = typer.Option(
        None, help="Classes that get synthetic images, e.g. PMY,MY (custom recipes).", show_default="the recipe's"
    ),
    per_class: int | None = typer.Option(
        None,
        help="Synthetic images per augmented class, replacing the recipe's counts (PMY top-up included), "
        "or the balance target.",
        show_default="the recipe's",
    ),
    max_real: int | None = typer.Option(
        None, help="Use at most N real images per class (seeded), for quick runs.", show_default="all"
    ),
    rbc: int = typer.Option(
        _COMPOSE.rbc, help=f"Red cells per synthetic image (the paper: 8; {scenes_using('rbc')} only)."
    ),
    platelets: str = typer.Option(
        "{}..{}".format(*_COMPOSE.platelets),
        help=f"Platelets per synthetic image: a count or a range LOW..HIGH ({scenes_using('platelets')} only).",
    ),
    scene: str = typer.Option(
        _COMPOSE.scene,
        help=f"Scene of the synthetic images: {scene_help()} Use {PLACING_SCENE} to reproduce the paper.",
    ),
    workers: int = typer.Option(2, callback=check_workers, help="Worker processes for segmentation and composition."),
    work: Path | None = typer.Option(
        None, help="Cache of prepared records and sprite banks.", show_default="OUT/../.work/<key>"
    ),
    overwrite: bool = typer.Option(False, help="Replace an existing dataset folder."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Build one of the paper's datasets: prepare -> segment -> compose -> OUT/{train,val,test}/<CLASS>/."""
    from naturalize import build as b

    compose = ComposeParams(rbc=rbc, platelets=parse_range(platelets), scene=scene.lower())
    meta = b.build(
        recipe,
        pbc,
        out,
        protocol=protocol,
        seed=seed,
        fractions=_parse_split(split),
        backend=backend,
        checkpoint=checkpoint,
        model_type=model_type,
        device=device,
        sam_settings=parse_settings(sam_set or []),
        classes=_classes(classes),
        per_class=per_class,
        per_class_cap=max_real,
        workers=workers,
        work=work,
        overwrite=overwrite,
        compose=compose,
        echo=typer.echo,
        progress=progress,
    )
    typer.echo(b.format_table(meta))
    typer.echo(f"wrote {meta['out']}/dataset.json")


@app.command(
    epilog=examples(
        "naturalize audit datasets/2k-pbc",
        "naturalize audit datasets/2k-pbc datasets/2k-pbc-paper --no-hashes",
    )
)
def audit(
    datasets: list[Path] = typer.Argument(..., help="Dataset folders written by `naturalize build`."),
    hashes: bool = typer.Option(
        True, help="Also read every file of the tree (finds copies across splits: the same bytes or picture)."
    ),
) -> None:
    """Check a dataset's protocol from its files: no real image in two splits, val/test real-only (clean), and
    every synthetic image's plate, donor and cells traced to training images. Exit 1 when a problem is found."""
    from naturalize.audit import audit_dataset, format_audit

    results = [audit_dataset(d, hashes=hashes) for d in datasets]
    for result in results:
        typer.echo(format_audit(result))
    if not all(r.ok for r in results):
        raise typer.Exit(1)


@app.command(
    epilog=examples(
        "naturalize compose --class PMY --n 2000 --bank bank --out synthetic",
        "naturalize compose --class PMY --n 20000 --bank bank --out synthetic --shard 3/8 --workers 8",
    )
)
def compose(
    cls: str = typer.Option(..., "--class", help="Class of the images, e.g. PMY (one of the 11 PBC classes)."),
    n: int = typer.Option(..., "--n", help="Number of images of the whole run (all shards together)."),
    bank: Path = typer.Option(Path("bank"), "--bank", help="Sprite bank made by `naturalize segment`."),
    out: Path = typer.Option(
        Path("out"), "--out", help="Output folder: OUT/<CLASS>/, manifest.jsonl, annotations.json."
    ),
    seed: int = typer.Option(0, callback=check_seed, help="Seed: image i depends only on (seed, class, i)."),
    rbc: int = typer.Option(_COMPOSE.rbc, help=f"Red cells per image ({scenes_using('rbc')} only)."),
    wbc: int = typer.Option(
        _COMPOSE.wbc, help=f"White cells of the class per image, the first near the centre ({scenes_using('wbc')})."
    ),
    platelets: str = typer.Option(
        "{}..{}".format(*_COMPOSE.platelets),
        help=f"Platelets per image: a count or a range LOW..HIGH ({scenes_using('platelets')} only).",
    ),
    size: str = typer.Option(
        "{}x{}".format(*_COMPOSE.size),
        help="Size of the written images, WIDTHxHEIGHT (composed at 360x363, then resized as a whole).",
    ),
    fmt: str = typer.Option(_COMPOSE.fmt, "--format", help="jpg (4:4:4, as the PBC images) or png."),
    quality: int = typer.Option(_COMPOSE.quality, help="JPEG quality (75: the PBC images' own; --format jpg only)."),
    scene: str = typer.Option(
        _COMPOSE.scene,
        help=scene_help(),
    ),
    wbc_scale: bool = typer.Option(
        _COMPOSE.wbc_scale, help="Size each white cell within its class's measured size range (more variety)."
    ),
    wbc_stain: bool = typer.Option(
        _COMPOSE.wbc_stain, help="Give each white cell the stain of another cell of its class (more variety)."
    ),
    wbc_warp: bool = typer.Option(
        _COMPOSE.wbc_warp, help="Bend each white cell by a small smooth warp (a few px, area kept; more variety)."
    ),
    wbc_focus: bool = typer.Option(
        _COMPOSE.wbc_focus, help="Blur or sharpen each white cell to the focus of the image it is pasted into."
    ),
    workers: int = typer.Option(
        2, callback=check_workers, help="Worker processes (they share the library read from the bank once)."
    ),
    shard: str | None = typer.Option(
        None, help="K/N: make only the K-th of N equal parts (e.g. a SLURM array task).", show_default="the whole run"
    ),
    overwrite: bool = typer.Option(False, help="Replace an earlier run of this class in OUT with other settings."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Compose realistic synthetic images of one class from a sprite bank (resumable, shardable)."""
    from naturalize.compose.run import compose_class, run_summary

    params = ComposeParams(
        size=parse_size(size),
        rbc=rbc,
        wbc=wbc,
        platelets=parse_range(platelets),
        fmt=fmt.lower(),
        quality=quality,
        scene=scene.lower(),
        wbc_scale=wbc_scale,
        wbc_stain=wbc_stain,
        wbc_warp=wbc_warp,
        wbc_focus=wbc_focus,
    )
    compose_class(
        bank,
        cls,
        n,
        out,
        seed=seed,
        params=params,
        shard=parse_shard(shard),
        workers=workers,
        overwrite=overwrite,
        warn=lambda m: typer.echo(m, err=True),
        progress=progress,
    )
    typer.echo(run_summary(out, normalize_class(cls), n, parse_shard(shard), seed, params.fmt))


@app.command(
    epilog=examples(
        "naturalize preview synthetic --out synthetic.png",
        "naturalize preview datasets/2k-pbc/train/PMY --n 24 --out pmy.png",
    )
)
def preview(
    dir: Path = typer.Argument(
        ..., help="A compose output, a dataset tree (synthetic files are named *_syn_*) or a sprite bank."
    ),
    out: Path = typer.Option(Path("preview.png"), "--out", help="Contact sheet PNG to write."),
    n: int = typer.Option(48, "--n", help="Number of tiles."),
    real: Path | None = typer.Option(
        None,
        "--real",
        help="Folder of real images to show beside the synthetic ones (then every image in DIR counts as synthetic "
        "when none is named *_syn_*).",
        show_default="the real images found in DIR",
    ),
    seed: int = typer.Option(0, callback=check_seed, help="Seed of the choice of images."),
) -> None:
    """A contact sheet of images, real beside synthetic when both exist."""
    from naturalize.compose.preview import contact_sheet

    info = contact_sheet(dir, out, n=n, real=real, seed=seed)
    if info["unreadable"]:
        typer.echo(
            f"warning: skipped {len(info['unreadable'])} unreadable image(s): {'; '.join(info['unreadable'])}", err=True
        )
    typer.echo(f"wrote {out} ({info['real']} real, {info['synthetic']} synthetic tiles)")


@app.command(epilog=examples("naturalize demo", "naturalize demo --pbc ~/data/PBC --size small --out demo-real"))
def demo(
    out: Path = typer.Option(
        Path("naturalize-demo"), "--out", help="Folder for everything the demo makes, report.html included."
    ),
    pbc: Path | None = typer.Option(
        None,
        "--pbc",
        help="A real PBC download: use a per-class subset of it instead of drawn images.",
        show_default="drawn images",
    ),
    size: str = typer.Option("default", "--size", help="small (about 1 min) or default (about 2 min on 2 CPU cores)."),
    seed: int = typer.Option(
        0, callback=check_seed, help="Seed of every stage (same seed -> same data set and images)."
    ),
    workers: int = typer.Option(2, callback=check_workers, help="Processes for segmentation and composition."),
    overwrite: bool = typer.Option(False, help="Replace an earlier demo in --out."),
) -> None:
    """Run the whole pipeline on a small data set (drawn, or --pbc real) and write OUT/report.html."""
    from naturalize.demo.pipeline import run_demo

    run_demo(out, pbc=pbc, size=size, seed=seed, workers=workers, overwrite=overwrite, echo=typer.echo)


@app.command(
    epilog=examples(
        "naturalize realism --real datasets/2k-pbc/test --synthetic synthetic --out realism",
        "naturalize realism --real held-out --synthetic synthetic --classes PMY,MY --seeds 5 --epochs 30 --size 128",
    )
)
def realism(
    real: Path = typer.Option(
        ..., "--real", help="Folder of real crops (class from the file-name prefix or <CLASS>/ folders)."
    ),
    synthetic: Path = typer.Option(
        ..., "--synthetic", help="Folder of synthetic images to test (e.g. a compose --out)."
    ),
    out: Path = typer.Option(Path("realism"), "--out", help="Folder for realism.json, auc.png and saliency.png."),
    seeds: int = typer.Option(5, help="Critics per test (seeds vary the real draw, the split and the training)."),
    classes: str | None = typer.Option(
        None, help="Only these classes, e.g. BNE,MMY,MY,PMY,SNE.", show_default="every class both folders hold"
    ),
    per_class: int = typer.Option(0, help="At most N images per class and side (0: as many as the smaller side has)."),
    size: int = typer.Option(128, help="Critic input side in pixels."),
    epochs: int = typer.Option(30, help="Critic training epochs."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Can a critic tell your synthetic images from real ones? Held-out AUC (0.5: no) with a real-vs-real baseline."""
    from naturalize.realism.critic import CriticParams
    from naturalize.realism.report import left_out, table
    from naturalize.realism.run import realism as run_realism

    if epochs < 1:
        raise UserError(f"--epochs {epochs}: need at least 1")
    result = run_realism(
        real,
        synthetic,
        out,
        seeds=seeds,
        classes=_classes(classes),
        per_class=per_class,
        params=CriticParams(size=size, epochs=epochs),
        progress=progress,
    )
    typer.echo(table(result))
    for line in left_out(result):
        typer.echo(line, err=True)
    typer.echo(f"wrote {out / 'realism.json'}, {out / 'auc.png'}, {out / 'saliency.png'}")


def main() -> None:
    """Entry point: run the app, turning a UserError into one line on stderr and exit code 2 (TensorFlow's log
    noise silenced for demo and realism: clihelp.quiet_tensorflow; idle OpenMP threads sleep: clihelp.calm_openmp)."""
    quiet_tensorflow()
    calm_openmp()
    run_app(app)


if __name__ == "__main__":
    main()
