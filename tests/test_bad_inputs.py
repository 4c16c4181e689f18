"""Bad and unusual inputs against the real command lines (issue 11): each case runs `python -m naturalize.cli` or
`python -m classify.cli` as a subprocess on small trees made here (procedurally drawn PBC-like images) and checks

* the exit code: 2 with exactly one `error:` line naming the file or option and the fix, or a documented success;
* no traceback anywhere in stdout or stderr;
* a checksum of every file that existed before the command (inputs included) is unchanged afterwards.

Cases are a table, each tagged with its class (data loss / traceback / silent wrong / other), so the closing note
can list them by class. Cases that need a trained classifier share one tiny run (custom_cnn at 16 px).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from naturalize.testing.cli import run_cli

REPO = Path(__file__).resolve().parents[1]
DATA_LOSS, TRACEBACK, SILENT, OTHER = "data loss", "traceback", "silent wrong", "other"


# ---------------------------------------------------------------- the world the cases run in


def _digest(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under root (symlinks by their target path)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[p.relative_to(root).as_posix()] = "link:" + os.readlink(p)
        elif p.is_file():
            out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _env(world: Path) -> dict[str, str]:
    """What the commands' environment sets over this process's (an empty SAM checkpoint variable means unset)."""
    return {
        "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "CLASSIFY_CACHE": str(world / ".cache"),
        "NATURALIZE_DATA": str(world / "datasets"),
        "NATURALIZE_SAM_CHECKPOINT": "",
    }


def run_in(world: Path, tool: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`tool ARGS` run in `cwd` with the world's environment."""
    return run_cli(tool, *args, env=_env(world), cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """pbc/ (drawn release, 4 images per class), prep/ (prepared), bank/ (classical, train split),
    syn/ (a compose run of PMY), ds/ (a 2-class train/val/test tree) and user/ (a folder of a user's own files)."""
    from naturalize.compose.run import compose_class
    from naturalize.drawn import write_drawn_release
    from naturalize.prepare import prepare
    from naturalize.segment.run import segment

    w = tmp_path_factory.mktemp("world")
    write_drawn_release(w / "pbc", 4, seed=0, progress=False)
    prepare(w / "pbc", w / "prep", progress=False, workers=1)
    segment(w / "prep", w / "bank", backend="classical", split="train", workers=1, progress=False, echo=lambda m: None)
    compose_class(w / "bank", "PMY", 3, w / "syn", workers=1, progress=False)
    drawn = sorted((w / "pbc").rglob("*.jpg"))
    for split, k in (("train", 3), ("val", 1), ("test", 1)):
        for cls, prefix in (("LY", "LY_"), ("MO", "MO_")):
            files = [p for p in drawn if p.name.startswith(prefix)]
            (w / "ds" / split / cls).mkdir(parents=True, exist_ok=True)
            start = {"train": 0, "val": 3, "test": 3}[split]
            for p in files[start : start + k]:
                shutil.copy(p, w / "ds" / split / cls / p.name)
    (w / "user" / "train" / "LY").mkdir(parents=True)
    (w / "user" / "notes.txt").write_text("my only notes\n")
    (w / "user" / "train" / "LY" / "cell.jpg").write_bytes(drawn[0].read_bytes())
    return w


@pytest.fixture(scope="module")
def run_dir(world: Path) -> Path:
    """One tiny trained run of ds/ (custom_cnn, 16 px, 1 epoch)."""
    proc = run_in(
        world,
        "classify",
        [
            "train",
            "--dataset",
            str(world / "ds"),
            "--model",
            "custom_cnn",
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--image-size",
            "16",
            "--no-evaluate",
            "--out",
            str(world / "run"),
        ],
        world,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return world / "run"


# ---------------------------------------------------------------- the case table


@dataclass(frozen=True)
class Case:
    """One command line. `args` may hold {pbc} {prep} {bank} {syn} {ds} {user} {run} {tmp} {world}; `setup(world,
    tmp)` prepares files in tmp first; `expect` is a fragment the error line must hold (exit 2), or None for a
    documented success checked by `check(proc, world, tmp)`."""

    id: str
    kind: str
    tool: str
    args: tuple[str, ...]
    expect: str | None
    setup: Callable[[Path, Path], None] | None = None
    check: Callable[[subprocess.CompletedProcess, Path, Path], None] | None = None
    replaces: tuple[
        str, ...
    ] = ()  # tmp-relative prefixes of the tool's own earlier outputs, which --overwrite replaces
    copies_run: bool = False  # setup copies the shared trained run (world/run) into tmp

    @property
    def needs_run(self) -> bool:
        """Whether the command reads the shared trained run ({run} in its args, or a copy its setup makes)."""
        return self.copies_run or any("{run}" in a for a in self.args)


def _user_files(dirname: str) -> Callable[[Path, Path], None]:
    def setup(world: Path, tmp: Path) -> None:
        shutil.copytree(world / "user", tmp / dirname)

    return setup


def _user_class_folder(world: Path, tmp: Path) -> None:
    """A folder holding a class folder of the user's own images and notes (no compose run)."""
    (tmp / "out" / "PMY").mkdir(parents=True)
    (tmp / "out" / "PMY" / "real_image.jpg").write_bytes(next((world / "pbc").rglob("PMY_*.jpg")).read_bytes())
    (tmp / "out" / "PMY" / "notes.txt").write_text("do not delete\n")


def _compose_out_with_user_class(world: Path, tmp: Path) -> None:
    """A genuine compose output (of PMY) into which the user put an LY/ folder of their own."""
    shutil.copytree(world / "syn", tmp / "out")
    (tmp / "out" / "LY").mkdir()
    (tmp / "out" / "LY" / "mine.txt").write_text("mine\n")


def _bank_copy(edit: Callable[[Path], None]) -> Callable[[Path, Path], None]:
    def setup(world: Path, tmp: Path) -> None:
        shutil.copytree(world / "bank", tmp / "bank")
        edit(tmp / "bank")

    return setup


def _truncate(name: str, rows: int) -> Callable[[Path], None]:
    def edit(bank: Path) -> None:
        lines = (bank / name).read_text().splitlines(keepends=True)
        (bank / name).write_text("".join(lines[:-rows]))

    return edit


def _edit_number(bank: Path) -> None:
    text = (bank / "index.csv").read_text().splitlines(keepends=True)
    fields = text[1].split(",")
    fields[4] = str(int(fields[4]) + 1)  # x0 of the first sprite
    text[1] = ",".join(fields)
    (bank / "index.csv").write_text("".join(text))


def _mangle_record(bank: Path) -> None:
    meta = json.loads((bank / "bank.json").read_text())
    meta["files"]["index.csv"] = 5
    (bank / "bank.json").write_text(json.dumps(meta))


def _write(rel: str, data: bytes | str) -> Callable[[Path, Path], None]:
    def setup(world: Path, tmp: Path) -> None:
        p = tmp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data if isinstance(data, bytes) else data.encode())

    return setup


def _mixed_layout(world: Path, tmp: Path) -> None:
    shutil.copytree(world / "pbc", tmp / "mixed")
    (tmp / "mixed" / "train" / "LY").mkdir(parents=True)
    shutil.copy(next((tmp / "mixed").rglob("LY_*.jpg")), tmp / "mixed" / "train" / "LY" / "extra.jpg")


def _raw_tree_with_broken_file(world: Path, tmp: Path) -> None:
    for cls in ("LY", "MO"):
        (tmp / "raw" / cls).mkdir(parents=True)
        for p in sorted((world / "pbc").rglob(f"{cls}_*.jpg"))[:1]:
            shutil.copy(p, tmp / "raw" / cls / p.name)
    (tmp / "raw" / "LY" / "LY_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")


def _one_class(world: Path, tmp: Path) -> None:
    for split in ("train", "val", "test"):
        shutil.copytree(world / "ds" / split / "LY", tmp / "one" / split / "LY")


def _ds_with_broken(world: Path, tmp: Path) -> None:
    shutil.copytree(world / "ds", tmp / "ds2")
    (tmp / "ds2" / "train" / "LY" / "bad1.jpg").write_bytes(b"garbage")
    (tmp / "ds2" / "train" / "MO" / "bad2.png").write_bytes(b"")


def _images_with_broken(world: Path, tmp: Path) -> None:
    shutil.copytree(world / "ds" / "test", tmp / "imgs")
    (tmp / "imgs" / "LY" / "broken.jpg").write_bytes(b"garbage")


def _only_broken(world: Path, tmp: Path) -> None:
    (tmp / "imgs").mkdir()
    (tmp / "imgs" / "a.jpg").write_bytes(b"garbage")
    (tmp / "imgs" / "b.png").write_bytes(b"\x89PNG broken")


def _syn_with_broken(world: Path, tmp: Path) -> None:
    shutil.copytree(world / "syn", tmp / "syn2")
    (tmp / "syn2" / "PMY" / "PMY_syn_9_9.jpg").write_bytes(b"garbage")


def _own_dataset_then_notes(world: Path, tmp: Path) -> None:
    proc = run_in(
        world,
        "naturalize",
        ["build", "pbc11", "--pbc", str(world / "pbc"), "--out", str(tmp / "d"), "--workers", "1"],
        tmp,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (tmp / "d" / "notes.txt").write_text("mine\n")


def _own_dataset_then_notes_in_tree(world: Path, tmp: Path) -> None:
    """A dataset build wrote, then the user's note (and a folder of theirs) inside one of its class folders."""
    _own_dataset_then_notes(world, tmp)
    folder = next(p for p in sorted((tmp / "d" / "train").iterdir()) if p.is_dir())
    (folder / "notes.txt").write_text("mine\n")
    (folder / "extra").mkdir()
    (folder / "extra" / "more.txt").write_text("mine too\n")


def _own_dataset_then_notes_in_synthetic(world: Path, tmp: Path) -> None:
    """A dataset build wrote, then the user's note and a link to a file outside in its synthetic/ folder (which
    --overwrite used to remove whole)."""
    _own_dataset_then_notes(world, tmp)
    (tmp / "d" / "synthetic").mkdir(exist_ok=True)
    (tmp / "d" / "synthetic" / "notes.txt").write_text("mine\n")
    (tmp / "outside.txt").write_text("mine\n")
    (tmp / "d" / "synthetic" / "manifest.jsonl").symlink_to(tmp / "outside.txt")


def _own_compose_then_notes_in_class(world: Path, tmp: Path) -> None:
    shutil.copytree(world / "syn", tmp / "out")
    (tmp / "out" / "PMY" / "notes.txt").write_text("mine\n")


def _own_compose_then_link_in_class(world: Path, tmp: Path) -> None:
    """A compose run, then the user's link, named like one of its images, to a file outside: compose --overwrite
    took it for its own (and removed it)."""
    shutil.copytree(world / "syn", tmp / "out")
    (tmp / "outside.txt").write_text("mine\n")
    (tmp / "out" / "PMY" / "PMY_syn_7_0.jpg").symlink_to(tmp / "outside.txt")


def _own_prepared_then_notes(world: Path, tmp: Path) -> None:
    shutil.copytree(world / "prep", tmp / "p")
    (tmp / "p" / "notes.txt").write_text("mine\n")


def _own_compose_then_notes(world: Path, tmp: Path) -> None:
    shutil.copytree(world / "syn", tmp / "out")
    (tmp / "out" / "notes.txt").write_text("mine\n")


def _damaged_marker(world: Path, tmp: Path) -> None:
    shutil.copytree(world / "syn", tmp / "out")
    (tmp / "out" / ".naturalize-output.json").write_text("{not json")


def _damaged_compose_state(world: Path, tmp: Path) -> None:
    shutil.copytree(world / "syn", tmp / "out")
    (tmp / "out" / ".naturalize-compose" / "PMY.json").write_text('{"seed": 0, "n"')


def _run_copy(edit: Callable[[Path], None]) -> Callable[[Path, Path], None]:
    """Setup: a copy of the shared trained run in tmp/run2, then `edit(tmp/run2)`."""

    def setup(world: Path, tmp: Path) -> None:
        shutil.copytree(world / "run", tmp / "run2")
        edit(tmp / "run2")

    return setup


def _config_without_image_size(run: Path) -> None:
    config = json.loads((run / "config.json").read_text())
    del config["image_size"]
    (run / "config.json").write_text(json.dumps(config))


def _state_damaged(run: Path) -> None:
    (run / "state.json").write_text('{"epoch": 1, "do')


def _model_cut_short(run: Path) -> None:
    data = (run / "model.keras").read_bytes()
    (run / "model.keras").write_bytes(data[: len(data) // 2])


def _kept(*rels: str) -> Callable[[subprocess.CompletedProcess, Path, Path], None]:
    def check(proc, world: Path, tmp: Path) -> None:
        for rel in rels:
            assert (tmp / rel).is_file(), f"{rel} was removed"
        assert (tmp / rels[0]).read_text() == "mine\n"  # the user's own file, untouched

    return check


def _said(fragment: str, *rels: str) -> Callable[[subprocess.CompletedProcess, Path, Path], None]:
    def check(proc, world: Path, tmp: Path) -> None:
        assert fragment in proc.stderr + proc.stdout, proc.stderr
        for rel in rels:
            assert (tmp / rel).exists(), rel

    return check


def _predicted_the_rest(proc, world: Path, tmp: Path) -> None:
    assert "broken.jpg" in proc.stderr and "warning: skipped 1 image" in proc.stderr
    rows = (tmp / "p.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 and not any("broken" in r for r in rows)


def _records_unchanged_and_limit(proc, world: Path, tmp: Path) -> None:
    cur = (tmp / "b" / "curation.csv").read_text().splitlines()
    assert len(cur) == 1 + 3


N, NS = "naturalize", "classify"


def _compose(*more: str, cls: str = "PMY", n: str = "2", bank: str = "{bank}", out: str = "{tmp}/o") -> tuple[str, ...]:
    """`compose` of `n` images of `cls` from `bank` into `out`, then the options `more`."""
    return ("compose", "--class", cls, "--n", n, "--bank", bank, "--out", out, *more)


def _build(*more: str, recipe: str = "pbc11", out: str = "{tmp}/d") -> tuple[str, ...]:
    """`build` of `recipe` from the world's PBC tree into `out`, then the options `more`."""
    return ("build", recipe, "--pbc", "{pbc}", "--out", out, *more)


def _prepare(*more: str, src: str = "{pbc}", out: str = "{tmp}/p") -> tuple[str, ...]:
    """`prepare` of `src` into `out`, then the options `more`."""
    return ("prepare", src, "--out", out, *more)


def _segment(*more: str, src: str = "{prep}", out: str = "{tmp}/b") -> tuple[str, ...]:
    """`segment` of `src` into `out`, then the options `more`."""
    return ("segment", src, "--out", out, *more)


def _train(*more: str, dataset: str = "{ds}") -> tuple[str, ...]:
    """`classify train` of custom_cnn on `dataset`, then the options `more`."""
    return ("train", "--dataset", dataset, "--model", "custom_cnn", *more)


def _refuses_user_folder(id: str, tool: str, args: tuple[str, ...]) -> Case:
    """A command whose output is {tmp}/mine, a folder of the user's own files: refused, nothing in it touched."""
    return Case(id, DATA_LOSS, tool, args, "not written by naturalize", setup=_user_files("mine"))


def _refuses_edited_bank(id: str, kind: str, expect: str, edit: Callable[[Path], None]) -> Case:
    """`compose` from a copy of the world's bank changed by `edit`: refused with an error holding `expect`."""
    return Case(id, kind, N, _compose(bank="{tmp}/bank"), expect, setup=_bank_copy(edit))


def _out_is_file(id: str, tool: str, args: tuple[str, ...]) -> Case:
    """A command whose --out (or its folder) is the file {tmp}/f: one line saying so."""
    return Case(id, TRACEBACK, tool, args, "is a file", setup=_write("f", "x"))


def _out_is_folder(id: str, tool: str, args: tuple[str, ...]) -> Case:
    """A command whose file output --out is the folder {tmp}/d: one line saying so."""
    return Case(id, TRACEBACK, tool, args, "is a folder", setup=_write("d/keep.txt", "x"))


CLASSICAL = ("--backend", "classical")
CASES = [
    # ---- data loss: overwrite and overlap
    Case("build-out-is-pbc-overwrite", DATA_LOSS, N, _build("--overwrite", out="{pbc}"), "--out"),
    Case(
        "build-out-contains-pbc-overwrite",
        DATA_LOSS,
        N,
        _build("--overwrite", out="{world}"),
        "contains the PBC download",
    ),
    Case("build-out-inside-pbc", DATA_LOSS, N, _build(out="{pbc}/datasets/x"), "is inside the PBC download"),
    _refuses_user_folder("build-out-user-folder-overwrite", N, _build("--overwrite", out="{tmp}/mine")),
    _refuses_user_folder("build-out-user-folder-truthful", N, _build(out="{tmp}/mine")),
    Case("build-work-inside-pbc", DATA_LOSS, N, _build("--work", "{pbc}/.work"), "--work"),
    Case(
        "build-overwrite-keeps-user-file",
        DATA_LOSS,
        N,
        _build("--seed", "1", "--overwrite", "--workers", "1"),
        None,
        setup=_own_dataset_then_notes,
        check=_kept("d/notes.txt", "d/dataset.json"),
        replaces=("d/", ".work/"),
    ),
    Case(
        "build-rerun-keeps-user-file-in-tree",
        DATA_LOSS,
        N,
        _build("--workers", "1"),
        "was not written by naturalize build",
        setup=_own_dataset_then_notes_in_tree,
    ),
    Case(
        "build-overwrite-keeps-user-file-in-tree",
        DATA_LOSS,
        N,
        _build("--seed", "1", "--overwrite", "--workers", "1"),
        "was not written by naturalize build",
        setup=_own_dataset_then_notes_in_tree,
    ),
    Case(
        "build-overwrite-keeps-user-file-in-synthetic",
        DATA_LOSS,
        N,
        _build("--seed", "1", "--overwrite", "--workers", "1"),
        "was not written by naturalize (dataset)",
        setup=_own_dataset_then_notes_in_synthetic,
    ),
    Case(
        "compose-overwrite-keeps-user-file-in-class-folder",
        DATA_LOSS,
        N,
        _compose("--seed", "5", "--overwrite", "--workers", "1", out="{tmp}/out"),
        "was not written by naturalize compose",
        setup=_own_compose_then_notes_in_class,
    ),
    Case(
        "compose-overwrite-keeps-user-link-in-class-folder",
        DATA_LOSS,
        N,
        _compose("--seed", "5", "--overwrite", "--workers", "1", out="{tmp}/out"),
        "PMY_syn_7_0.jpg was not written by naturalize compose",
        setup=_own_compose_then_link_in_class,
    ),
    Case(
        "build-other-settings-needs-overwrite",
        DATA_LOSS,
        N,
        _build("--seed", "1"),
        "built with other settings",
        setup=_own_dataset_then_notes,
    ),
    Case(
        "compose-overwrite-user-class-folder",
        DATA_LOSS,
        N,
        _compose("--overwrite", out="{tmp}/out"),
        "not written by naturalize",
        setup=_user_class_folder,
    ),
    Case(
        "compose-overwrite-user-folder-in-own-output",
        DATA_LOSS,
        N,
        _compose("--overwrite", cls="LY", out="{tmp}/out"),
        "was not written by naturalize compose",
        setup=_compose_out_with_user_class,
    ),
    Case("compose-out-is-bank", DATA_LOSS, N, _compose(out="{bank}"), "is the bank"),
    # a platelet in the inpainted hole of a real image's white cell: the smudge showed, exit 0
    Case("compose-transplant-platelets", SILENT, N, _compose(cls="PLT"), "use --scene paper for --class PLT"),
    Case("compose-out-contains-bank", DATA_LOSS, N, _compose("--overwrite", out="{world}"), "contains the bank"),
    # png is lossless: --quality 90 was silently ignored
    Case("compose-png-quality", SILENT, N, _compose("--format", "png", "--quality", "90"), "--quality 90 would be"),
    Case(
        "compose-overwrite-keeps-user-file",
        DATA_LOSS,
        N,
        _compose("--seed", "5", "--overwrite", "--workers", "1", out="{tmp}/out"),
        None,
        setup=_own_compose_then_notes,
        check=_kept("out/notes.txt"),
        replaces=("out/",),
    ),
    # a compose state file cut short (or edited) ended the rerun in a JSONDecodeError traceback
    Case(
        "compose-damaged-state",
        TRACEBACK,
        N,
        _compose(out="{tmp}/out"),
        "PMY.json is damaged",
        setup=_damaged_compose_state,
    ),
    Case(
        "compose-damaged-marker",
        DATA_LOSS,
        N,
        _compose("--overwrite", out="{tmp}/out"),
        "is damaged",
        setup=_damaged_marker,
    ),
    _refuses_user_folder(
        "prepare-materialize-overwrite-user-tree", N, _prepare("--materialize", "--overwrite", out="{tmp}/mine")
    ),
    Case("prepare-out-is-pbc", DATA_LOSS, N, _prepare("--overwrite", out="{pbc}"), "is the PBC tree"),
    Case("prepare-out-contains-pbc", DATA_LOSS, N, _prepare("--overwrite", out="{world}"), "contains the PBC tree"),
    Case(
        "prepare-overwrite-keeps-user-file",
        DATA_LOSS,
        N,
        _prepare("--seed", "3", "--overwrite", "--workers", "1"),
        None,
        setup=_own_prepared_then_notes,
        check=_kept("p/notes.txt", "p/records.csv"),
        replaces=("p/",),
    ),
    Case("segment-out-is-input", DATA_LOSS, N, _segment(*CLASSICAL, out="{prep}"), "is the input"),
    Case(
        "segment-out-inside-input",
        DATA_LOSS,
        N,
        _segment(*CLASSICAL, src="{pbc}", out="{pbc}/bank"),
        "is inside the input",
    ),
    _refuses_user_folder("segment-overwrite-user-folder", N, _segment(*CLASSICAL, "--overwrite", out="{tmp}/mine")),
    Case(
        "segment-overwrite-other-kind",
        DATA_LOSS,
        N,
        _segment(*CLASSICAL, "--overwrite", out="{syn}"),
        "holds a naturalize compose output, not a bank",
    ),
    Case(
        "preview-out-inside-input",
        DATA_LOSS,
        N,
        ("preview", "{syn}", "--out", "{syn}/sheet.png"),
        "is inside the image folder",
    ),
    _refuses_user_folder(
        "demo-out-user-folder-overwrite", N, ("demo", "--out", "{tmp}/mine", "--overwrite", "--size", "small")
    ),
    Case("demo-out-is-pbc", DATA_LOSS, N, ("demo", "--out", "{pbc}", "--pbc", "{pbc}", "--overwrite"), "is the --pbc"),
    Case("train-out-is-dataset", DATA_LOSS, NS, _train("--out", "{ds}"), "is the dataset"),
    _refuses_user_folder("train-out-user-folder", NS, _train("--out", "{tmp}/mine")),
    Case(
        "predict-out-inside-images",
        DATA_LOSS,
        NS,
        ("predict", "{run}", "{ds}/test", "--out", "{ds}/test/p.csv"),
        "is inside input",
    ),
    Case(
        "predict-out-is-an-input-image",
        DATA_LOSS,
        NS,
        ("predict", "{run}", "{tmp}/x.csv", "--out", "{tmp}/x.csv"),
        "is input",
        setup=_write("x.csv", "a,b\n"),
    ),
    Case(
        "evaluate-out-inside-dataset",
        DATA_LOSS,
        NS,
        ("evaluate", "{run}", "--out", "{ds}/eval"),
        "is inside the dataset",
    ),
    _refuses_user_folder("evaluate-out-user-folder", NS, ("evaluate", "{run}", "--out", "{tmp}/mine")),
    _refuses_user_folder("explain-out-user-folder", NS, ("explain", "{run}", "{ds}/test", "--out", "{tmp}/mine")),
    Case("explain-out-is-run", DATA_LOSS, NS, ("explain", "{run}", "{ds}/test", "--out", "{run}"), "is the input"),
    # ---- tracebacks
    _refuses_edited_bank(
        "corrupt-bank-json", TRACEBACK, "bank.json is damaged", lambda b: (b / "bank.json").write_text("{oops")
    ),
    _refuses_edited_bank(
        "bank-json-not-an-object",
        TRACEBACK,
        "bank.json is not a JSON object",
        lambda b: (b / "bank.json").write_text("[]"),
    ),
    _refuses_edited_bank("bank-json-damaged-file-record", TRACEBACK, "is damaged (its record", _mangle_record),
    _out_is_file("compose-out-is-file", N, _compose(out="{tmp}/f")),
    Case("compose-n-huge", TRACEBACK, N, _compose(n="1000000000000"), "--shard"),
    _out_is_folder("preview-out-is-folder", N, ("preview", "{syn}", "--out", "{tmp}/d")),
    Case(
        "preview-out-wrong-suffix", TRACEBACK, N, ("preview", "{syn}", "--out", "{tmp}/sheet.jpg"), "must end in .png"
    ),
    _out_is_file("prepare-out-is-file", N, _prepare(out="{tmp}/f")),
    _out_is_file("segment-out-is-file", N, _segment(*CLASSICAL, out="{tmp}/f")),
    _out_is_file("build-out-is-file", N, _build(out="{tmp}/f")),
    _out_is_file("train-out-is-file", NS, _train("--out", "{tmp}/f")),
    _out_is_folder("predict-out-is-folder", NS, ("predict", "{run}", "{ds}/test", "--out", "{tmp}/d")),
    _out_is_file("predict-out-parent-is-file", NS, ("predict", "{run}", "{ds}/test", "--out", "{tmp}/f/p.csv")),
    _out_is_folder("compare-out-is-folder", NS, ("compare", "{run}", "--out", "{tmp}/d")),
    _refuses_edited_bank(
        "index-missing-columns", TRACEBACK, "index.csv", lambda b: (b / "index.csv").write_text("a,b\n1,2\n")
    ),
    Case(
        "dataset-json-corrupt",
        TRACEBACK,
        NS,
        _train("--out", "{tmp}/r", dataset="{tmp}/ds2"),
        "dataset.json",
        setup=lambda w, t: (shutil.copytree(w / "ds", t / "ds2"), (t / "ds2" / "dataset.json").write_text("{")),
    ),
    # ---- silently wrong results
    _refuses_edited_bank("truncated-index", SILENT, "no longer matches", _truncate("index.csv", 3)),
    _refuses_edited_bank("hand-edited-index", SILENT, "no longer matches", _edit_number),
    _refuses_edited_bank("truncated-curation", SILENT, "no longer matches", _truncate("curation.csv", 1)),
    Case(
        "segment-resume-edited-bank",
        SILENT,
        N,
        _segment(*CLASSICAL, "--split", "train", out="{tmp}/bank"),
        "no longer matches",
        setup=_bank_copy(_truncate("index.csv", 2)),
    ),
    Case(
        "segment-leaves-prepared-input",
        SILENT,
        N,
        _segment(*CLASSICAL, "--limit", "3", "--workers", "1", "--no-progress"),
        None,
        check=_records_unchanged_and_limit,
    ),
    Case("compose-wbc-0", SILENT, N, _compose("--wbc", "0"), "--wbc 0"),
    Case("compose-rbc-500", SILENT, N, _compose("--scene", "paper", "--rbc", "500"), "--rbc 500"),
    Case(
        "build-platelets-ignored-by-transplant",
        SILENT,
        N,
        _build("--classes", "PMY", "--per-class", "5", "--platelets", "1..3", recipe="custom"),
        "--platelets 1..3 would be ignored",
    ),
    Case("compose-rbc-ignored-by-transplant", SILENT, N, _compose("--rbc", "12"), "--rbc 12 would be ignored"),
    Case("compose-wbc-ignored-by-transplant", SILENT, N, _compose("--wbc", "2"), "--wbc 2 would be ignored"),
    Case(
        "compose-rbc-short-reported",
        SILENT,
        N,
        _compose("--scene", "paper", "--rbc", "30", "--workers", "1", n="4"),
        None,
        check=_said("4 of 4 images hold fewer red cells than --rbc 30 asked", "o/manifest.jsonl"),
    ),
    Case(
        "explain-channels-negative", SILENT, NS, ("explain", "{run}", "{ds}/test", "--channels", "-5"), "--channels -5"
    ),
    Case("train-one-class", SILENT, NS, _train("--out", "{tmp}/r", dataset="{tmp}/one"), "one class", setup=_one_class),
    Case("prepare-mixed-layout", SILENT, N, _prepare(src="{tmp}/mixed"), "mixes layouts", setup=_mixed_layout),
    Case(
        "segment-reports-broken-file",
        SILENT,
        N,
        _segment(*CLASSICAL, "--workers", "1", "--no-progress", src="{tmp}/raw"),
        None,
        setup=_raw_tree_with_broken_file,
        check=_said("LY/LY_broken.jpg", "b/bank.json"),
    ),
    # ---- corrupt images: one pass, every bad file named
    Case(
        "train-lists-every-broken-image",
        OTHER,
        NS,
        _train("--out", "{tmp}/r", "--image-size", "16", "--epochs", "1", dataset="{tmp}/ds2"),
        "2 image(s) cannot be read",
        setup=_ds_with_broken,
    ),
    Case(
        "predict-skips-broken-image",
        OTHER,
        NS,
        ("predict", "{run}", "{tmp}/imgs", "--out", "{tmp}/p.csv"),
        None,
        setup=_images_with_broken,
        check=_predicted_the_rest,
    ),
    Case(
        "predict-only-broken-images",
        OTHER,
        NS,
        ("predict", "{run}", "{tmp}/imgs"),
        "2 image(s) cannot be read",
        setup=_only_broken,
    ),
    Case(
        "preview-skips-broken-image",
        OTHER,
        N,
        ("preview", "{tmp}/syn2", "--out", "{tmp}/s.png", "--n", "8"),
        None,
        setup=_syn_with_broken,
        check=_said("PMY_syn_9_9.jpg", "s.png"),
    ),
    # ---- other bad arguments (one line each)
    Case("compose-unknown-class", OTHER, N, _compose(cls="XYZ"), "unknown class"),
    Case("compose-n-zero", OTHER, N, _compose(n="0"), "--n 0"),
    Case("compose-bad-shard", OTHER, N, _compose("--shard", "3/2"), "--shard"),
    Case("compose-bad-platelets", OTHER, N, _compose("--platelets", "3..1"), "--platelets"),
    Case("compose-bad-size", OTHER, N, _compose("--size", "huge"), "--size"),
    # a negative --seed reached numpy's generators and ended in a traceback (compose had written its marker by then)
    Case("compose-negative-seed", TRACEBACK, N, _compose("--seed", "-1"), "--seed -1"),
    Case("prepare-negative-seed", TRACEBACK, N, _prepare("--seed", "-1"), "--seed -1"),
    Case("build-negative-seed", TRACEBACK, N, _build("--seed", "-1"), "--seed -1"),
    Case(
        "preview-negative-seed", TRACEBACK, N, ("preview", "{syn}", "--out", "{tmp}/s.png", "--seed", "-1"), "--seed -1"
    ),
    Case("demo-negative-seed", TRACEBACK, N, ("demo", "--out", "{tmp}/demo", "--seed", "-1"), "--seed -1"),
    # compose ran silently with --workers 0 or -2 (segment refused them): every --workers option now refuses
    Case("compose-zero-workers", SILENT, N, _compose("--workers", "0"), "--workers 0"),
    Case("prepare-negative-workers", SILENT, N, _prepare("--workers", "-2"), "--workers -2"),
    Case("build-zero-workers", SILENT, N, _build("--workers", "0"), "--workers 0"),
    Case("compose-missing-bank", OTHER, N, _compose(bank="{tmp}/nope"), "not a sprite bank"),
    Case("compose-other-settings", OTHER, N, _compose("--seed", "9", n="3", out="{syn}"), "--overwrite"),
    Case("prepare-bad-split", OTHER, N, _prepare("--split", "0.5,0.5"), "--split"),
    Case("prepare-missing-input", OTHER, N, _prepare(src="{tmp}/nope"), "does not exist"),
    Case("prepare-per-class-zero", OTHER, N, _prepare("--per-class", "0"), "--per-class"),
    Case("segment-limit-zero", OTHER, N, _segment("--limit", "0"), "--limit 0"),
    Case("segment-unknown-backend", OTHER, N, _segment("--backend", "magic"), "--backend"),
    Case("segment-unknown-class", OTHER, N, _segment("--classes", "XX"), "--classes"),
    Case(
        "segment-sam-missing-checkpoint",
        OTHER,
        N,
        _segment("--backend", "sam", "--checkpoint", "{tmp}/none.pth"),
        "fetch-sam",
    ),
    Case("build-unknown-recipe", OTHER, N, _build(recipe="3k-pbc"), "unknown recipe"),
    Case("build-custom-needs-classes", OTHER, N, _build(recipe="custom"), "--classes"),
    Case("build-unknown-protocol", OTHER, N, _build("--protocol", "x"), "protocol"),
    Case("preview-n-zero", OTHER, N, ("preview", "{syn}", "--out", "{tmp}/s.png", "--n", "0"), "--n 0"),
    Case("preview-missing-folder", OTHER, N, ("preview", "{tmp}/nope", "--out", "{tmp}/s.png"), "is not a folder"),
    Case("train-unknown-model", OTHER, NS, ("train", "--dataset", "{ds}", "--model", "resnet9000"), "resnet9000"),
    Case("train-missing-dataset", OTHER, NS, _train(dataset="{tmp}/nope"), "not found"),
    Case(
        "train-other-run",
        OTHER,
        NS,
        _train("--out", "{run}", "--lr", "0.5", "--image-size", "16", "--batch-size", "4"),
        "different run",
    ),
    Case("evaluate-not-a-run", OTHER, NS, ("evaluate", "{ds}"), "not a classify run"),
    Case("predict-missing-image", OTHER, NS, ("predict", "{run}", "{tmp}/nope.jpg"), "neither an image"),
    # a run whose config.json lacks image_size ended in a KeyError traceback, a cut-short model.keras in a ValueError
    Case(
        "predict-config-without-image-size",
        TRACEBACK,
        NS,
        ("predict", "{tmp}/run2", "{ds}/test"),
        "lacks a valid image_size",
        setup=_run_copy(_config_without_image_size),
        copies_run=True,
    ),
    Case(
        "predict-model-cut-short",
        TRACEBACK,
        NS,
        ("predict", "{tmp}/run2", "{ds}/test"),
        "cannot be read as a Keras model",
        setup=_run_copy(_model_cut_short),
        copies_run=True,
    ),
    # compare read a damaged state.json with json.loads: a JSONDecodeError traceback
    Case(
        "compare-state-damaged",
        TRACEBACK,
        NS,
        ("compare", "{tmp}/run2"),
        "state.json is damaged (not JSON)",
        setup=_run_copy(_state_damaged),
        copies_run=True,
    ),
    Case(
        "evaluate-model-cut-short",
        TRACEBACK,
        NS,
        ("evaluate", "{tmp}/run2", "--split", "test"),
        "cannot be read as a Keras model",
        setup=_run_copy(_model_cut_short),
        copies_run=True,
    ),
    Case("explain-unknown-target", OTHER, NS, ("explain", "{run}", "{ds}/test", "--target", "XX"), "--target"),
]


def _fill(arg: str, world: Path, tmp: Path) -> str:
    return arg.format(
        pbc=world / "pbc",
        prep=world / "prep",
        bank=world / "bank",
        syn=world / "syn",
        ds=world / "ds",
        user=world / "user",
        run=world / "run",
        tmp=tmp,
        world=world,
    )


def test_the_table_covers_every_class_and_60_cases() -> None:
    kinds = {c.kind for c in CASES}
    assert kinds == {DATA_LOSS, TRACEBACK, SILENT, OTHER} and len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", sorted(CASES, key=lambda c: (c.needs_run, c.tool)), ids=lambda c: f"{c.kind}:{c.id}")
def test_bad_input(case: Case, world: Path, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if case.needs_run:
        request.getfixturevalue("run_dir")
    if case.setup is not None:
        case.setup(world, tmp_path)
    before = {"world": _digest(world), "tmp": _digest(tmp_path)}
    proc = run_in(world, case.tool, [_fill(a, world, tmp_path) for a in case.args], tmp_path)
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text, text[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    if case.expect is None:
        assert proc.returncode == 0 and not errors, proc.stderr[-3000:]
        case.check(proc, world, tmp_path)
    else:
        assert proc.returncode == 2, (proc.returncode, text[-3000:])
        assert len(errors) == 1 and "error:" not in proc.stdout, proc.stderr
        assert case.expect in errors[0], errors[0]
        if case.tool == NS:  # classify has no --overwrite: its messages never offer or mention it
            assert "--overwrite" not in errors[0], errors[0]
            # and a failed classify command leaves no new folder holding only the output marker
            markers = [m for m in tmp_path.rglob(".naturalize-output.json") if len(list(m.parent.iterdir())) == 1]
            assert not [m for m in markers if m.relative_to(tmp_path).as_posix() not in before["tmp"]], markers
    after = {"world": _digest(world), "tmp": _digest(tmp_path)}
    for where, own in (("world", (".cache/",)), ("tmp", case.replaces)):
        changed = [p for p, h in before[where].items() if after[where].get(p) != h and not p.startswith(own)]
        assert not changed, f"{where}: files changed or removed: {changed[:10]}"


def test_killed_compose_leaves_no_orphan_tracebacks(world: Path, tmp_path: Path) -> None:
    """Traceback class: SIGKILL the main process of a 2-worker compose; its workers end with it, quietly (they
    used to print BrokenPipe tracebacks), and the stderr pipe they share closes."""
    import signal
    import time

    out = tmp_path / "out"
    args = [_fill(a, world, tmp_path) for a in _compose("--workers", "2", n="5000", out="{tmp}/out")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "naturalize.cli", *args],
        cwd=tmp_path,
        env={**os.environ, **_env(world)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (out / "PMY").is_dir() and sum(1 for _ in (out / "PMY").iterdir()) >= 20:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    t0 = time.time()
    err = proc.stderr.read().decode(errors="replace")  # EOF only once every worker holding the pipe is gone
    assert time.time() - t0 < 30
    assert "Traceback" not in err and "BrokenPipe" not in err, err[-2000:]


def test_build_refuses_a_curated_dataset_with_a_class_missing_from_a_split() -> None:
    """Silent-wrong class: curation that leaves a class without val images used to give a dataset that `classify`
    then refused; build now stops before composing, naming the class, the split and the fix."""
    from naturalize.build import check_splits_hold_classes
    from naturalize.fsio import UserError
    from naturalize.protocols import PROTOCOLS
    from naturalize.records import Record

    def rec(cls: str, split: str, i: int) -> Record:
        return Record(
            path=f"{cls}/{cls}_{split}_{i}.jpg",
            cls=cls,
            folder=cls,
            sha256="",
            width=1,
            height=1,
            mode="RGB",
            split=split,
        )

    full = [rec(c, s, i) for c in ("LY", "PMY") for s in ("train", "val", "test") for i in range(2)]
    check_splits_hold_classes(full, PROTOCOLS["clean"])
    lacking = [r for r in full if not (r.cls == "PMY" and r.split == "val")]
    with pytest.raises(UserError, match="class PMY has no val images.*--max-real"):
        check_splits_hold_classes(lacking, PROTOCOLS["clean"])
    # paper: pooled, then split with >= 1 val and test image per class
    check_splits_hold_classes(lacking, PROTOCOLS["paper"])
