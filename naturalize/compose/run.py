"""The compose shell: many images of one class from a bank, in worker processes, resumable and sharded.

In: a Bank (or its path), class, n, output directory, seed, ComposeParams, shard (k, N), workers.
Out: OUT/<CLASS>/<CLASS>_syn_<seed>_<index>.<jpg|png>, OUT/manifest.jsonl, OUT/annotations.json (COCO),
and OUT/.naturalize-compose/ (the run's parameters per class and journals of per-image records).

Image i depends only on (bank, parameters, seed, class, i): its generator is
numpy.random.default_rng([seed, class index, i]). A shard makes the indices of its contiguous block;
an interrupted run resumes (images with a record are skipped); the manifest and the COCO file are
rebuilt at the end of every run from all records in OUT, sorted, so any split of the work into shards
and reruns writes the same files. Each process appends to its own journal, one line per finished image
holding its manifest line and COCO annotations already serialised (annotate.journal_entry, joined by
tabs: journal_line), so the rebuild only joins text.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import re
import shutil
import socket
import sys
from collections.abc import Callable, Iterator
from multiprocessing.pool import Pool
from multiprocessing.process import BaseProcess
from pathlib import Path

import cv2
import numpy as np

from naturalize.bank import Bank
from naturalize.classes import CLASSES, normalize_class
from naturalize.codeversion import code_digest
from naturalize.compose.annotate import JSON_SEPARATORS, coco_text, image_record, journal_entry
from naturalize.compose.core import resized
from naturalize.compose.dupes import bytes_key, duplicates_warning, identical_groups
from naturalize.compose.library import Library, bank_fingerprint, check_class
from naturalize.compose.params import FORMATS, ComposeParams, check_format_options, check_scene_counts, shard_range
from naturalize.compose.scenes import check_scene_class, compose_scene, scene_library
from naturalize.fsio import UserError, locked, replace_bytes, write_all, write_text
from naturalize.outputs import MARKER, check_disjoint, claim, read_marker, read_record, write_marker
from naturalize.procs import die_with_parent, pool_context, started, waited, watched

STATE_DIR = ".naturalize-compose"
LOCK = "claim.lock"  # in STATE_DIR: held while a run checks and writes its settings (claim_output)
KIND = "compose"  # the output marker's kind (naturalize.outputs)
#: The files every run rebuilds in OUT from all journals (write_run_files).
RUN_FILES = ("manifest.jsonl", "annotations.json")
#: The most images one run (one shard) makes: its index list and returned paths are held in memory.
MAX_RUN_IMAGES = 1_000_000
#: More red cells than cover this fraction of the image area (at the bank's median red-cell area) cannot fit: such
#: an --rbc is refused. Counts below it that still do not all fit are reported after the run (see _work).
MAX_RBC_FILL = 1.0
STATE_VERSION = 2  # 2: composites of this code (q75 4:4:4, new draws); an older run is not resumed
#: The modules whose code shapes a run's images, manifest and COCO file (their digest is the state's `code`: a run
#: of other code is not resumed, which would mix images of two versions in one class).
COMPOSE_CODE = (
    "naturalize.compose.annotate",
    "naturalize.compose.core",
    "naturalize.compose.library",
    "naturalize.compose.params",
    "naturalize.compose.run",
    "naturalize.compose.scene_stats",
    "naturalize.compose.scenes",
    "naturalize.compose.source_cache",
    "naturalize.compose.stain",
    "naturalize.compose.transform",
    "naturalize.compose.variety",
    "naturalize.segment.gate",
    "naturalize.segment.inpaint",
    "naturalize.bank",
    "naturalize.decode",
)

# what this process composes with: set by _load (a forked worker inherits it) and _open_journal
_WORKER: dict = {}


def image_name(cls: str, seed: int, index: int, fmt: str) -> str:
    """'PMY_syn_0_17.jpg'."""
    return f"{cls}_syn_{seed}_{index}.{fmt}"


def encode(image: np.ndarray, params: ComposeParams) -> bytes:
    """BGR uint8 image -> JPEG (quality params.quality, 4:4:4 as the PBC files) or PNG bytes."""
    flags = (
        [
            cv2.IMWRITE_JPEG_QUALITY,
            params.quality,
            cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
            cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
        ]
        if params.fmt == "jpg"
        else [cv2.IMWRITE_PNG_COMPRESSION, 3]
    )
    ok, buf = cv2.imencode(FORMATS[params.fmt], image, flags)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {params.fmt} image")
    return buf.tobytes()


def render(lib: Library, params: ComposeParams, seed: int, index: int) -> tuple[np.ndarray, dict]:
    """Compose image `index` of (seed, class) at params.canvas, resized to params.size: the BGR image and its record
    (file relative to OUT)."""
    comp = compose_scene(lib, np.random.default_rng([seed, CLASSES.index(lib.cls), index]), params)
    comp = resized(comp, params.size)
    file = f"{lib.cls}/{image_name(lib.cls, seed, index, params.fmt)}"
    return comp.image, image_record(comp, lib, file, seed, index)


def _load(
    bank: Bank | str, cls: str, seed: int, params: ComposeParams, out: str, threads: int = 1, warm: bool = False
) -> None:
    """Read the bank (or the bank at that path) into this process's library (load_library)."""
    bank = bank if isinstance(bank, Bank) else Bank.open(bank)
    lib = scene_library(bank, cls, seed, params, threads=threads, warm=warm)
    _WORKER.update(lib=lib, params=params, seed=seed, out=Path(out))


def _open_journal(out: str, cls: str) -> None:
    """Give this process its own journal to append to (a worker also ends with its parent)."""
    if mp.parent_process() is not None:
        die_with_parent()
    journal = Path(out) / STATE_DIR / "journal" / f"{cls}.{socket.gethostname()}.{os.getpid()}.jsonl"
    _WORKER["journal"] = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    _WORKER["journal_path"] = journal


def _init_spawned(bank_root: str, cls: str, seed: int, params: ComposeParams, out: str) -> None:
    """A spawned worker: one OpenCV thread (one process per core already), its own library and journal."""
    die_with_parent()  # first: Ctrl-C while it reads the bank is the parent's to handle too
    cv2.setNumThreads(1)
    _load(bank_root, cls, seed, params, out)
    _open_journal(out, cls)


def _close() -> None:
    """Close this process's journal and free its library."""
    if "journal" in _WORKER:
        os.close(_WORKER["journal"])
    _WORKER.clear()


def _work(index: int) -> int:
    """Worker: compose, write the image atomically, then append its journal entry (one JSON line) to the
    process's journal (a line cut short by a kill is skipped when read: the image is simply made again).
    Returns how many of the red cells asked for found no room on the image (0 normally)."""
    image, record = render(_WORKER["lib"], _WORKER["params"], _WORKER["seed"], index)
    data = encode(image, _WORKER["params"])
    replace_bytes(f"{_WORKER['out']}/{record['file']}", data)
    entry = journal_entry(record) | {"key": bytes_key(data)}
    write_all(_WORKER["journal"], journal_line(entry).encode("ascii"), _WORKER["journal_path"])
    params = _WORKER["params"]
    return params.rbc - sum(1 for c in record["cells"] if c["kind"] == "RBC") if params.places_rbc else 0


_KEYS = ("class", "seed", "index", "file", "width", "height", "n_anns", "key")


def journal_line(entry: dict) -> str:
    """A journal entry as one line: its keys (compact JSON; "key": dupes.bytes_key of the image, when given), its
    manifest line and its COCO annotations, joined by tabs (compact JSON escapes every tab inside them)."""
    head = json.dumps({k: entry[k] for k in _KEYS if k in entry}, separators=JSON_SEPARATORS)
    return f"{head}\t{entry['manifest']}\t{entry['coco']}\n"


def parse_journal_line(line: str) -> dict | None:
    """journal_line's entry back; None for a line cut short by an interrupted run."""
    parts = line[:-1].split("\t") if line.endswith("\n") else ()
    if len(parts) != 3:
        return None
    try:
        entry = json.loads(parts[0])
    except json.JSONDecodeError:
        return None
    return entry | {"manifest": parts[1], "coco": parts[2]}


#: Keys of a bank's parameters that name the model which cut its sprites (SAM; the classical backend has none).
MODEL_KEYS: tuple[str, ...] = ("model_type", "checkpoint", "checkpoint_md5")


def segmentation_origin(bank: Bank) -> dict:
    """Which backend (and model: SAM's type, checkpoint file name and MD5) cut the bank's sprites, from its
    bank.json: recorded in the run's state file so a composed image can be traced to the weights behind it."""
    params = bank.meta.get("parameters") or {}
    return {"backend": bank.meta.get("backend"), **{k: params[k] for k in MODEL_KEYS if k in params}}


def _state_path(out: Path, cls: str) -> Path:
    return out / STATE_DIR / f"{cls}.json"


def _journal_name(cls: str | None = None) -> re.Pattern[str]:
    """The names of the journals compose writes (_open_journal): <cls>.<host>.<pid>.jsonl, of `cls` or any class."""
    classes = "|".join(re.escape(c) for c in ([cls] if cls else CLASSES))
    return re.compile(rf"({classes})\.[^/]+\.\d+\.jsonl")


def _journals(out: Path, cls: str | None = None) -> list[Path]:
    """The journals of `cls` (of every class when None) in OUT: files named as compose names them (_journal_name);
    another file there, or a link, is neither read nor removed."""
    d, ours = out / STATE_DIR / "journal", _journal_name(cls)
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if ours.fullmatch(p.name) and p.is_file() and not p.is_symlink())


def _is_state(record: dict) -> bool:
    """Whether a JSON object holds what compose reads from a run's settings: integers seed and n, and params (when
    present: the oldest versions lacked it) an object."""
    return (
        isinstance(record.get("seed"), int)
        and isinstance(record.get("n"), int)
        and isinstance(record.get("params", {}), dict)
    )


def _read_state(out: Path, cls: str) -> dict | None:
    """The settings of the run of `cls` in OUT (its state file), None when there is none. UserError when the file
    is damaged (not a compose run's settings, _is_state: edited by hand, or cut short by a disk fault)."""
    p = _state_path(out, cls)
    if not p.is_file():
        return None
    state = read_record(p)
    if state is None or not _is_state(state):
        raise UserError(
            f"{p} is damaged (not JSON of a compose run): the settings of the {cls} images in {out} are unknown; "
            f"rerun with --class {cls} --overwrite to make them again, or use another --out"
        )
    return state


def _clear_class(out: Path, cls: str) -> None:
    shutil.rmtree(out / cls, ignore_errors=True)
    _state_path(out, cls).unlink(missing_ok=True)
    for j in _journals(out, cls):
        j.unlink()


def _image_name(cls: str) -> re.Pattern[str]:
    """The names of the images of `cls` compose writes in OUT/<cls>/ (<cls>_syn_<seed>_<i>.<fmt>) and of their
    temporary files."""
    return re.compile(rf"\.?{re.escape(cls)}_syn_\d+_\d+\.({'|'.join(FORMATS)})(\.\d+\.tmp)?")


def foreign_files(out: Path, cls: str) -> list[Path]:
    """What OUT/<cls>/ holds that compose did not write there: anything but its images (<cls>_syn_<seed>_<i>.<fmt>)
    and their temporary files (a link, even so named, included; a linked OUT/<cls>/ itself is foreign); sorted."""
    ours = _image_name(cls)
    folder = out / cls
    if folder.is_symlink():
        return [folder]
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if not (ours.fullmatch(p.name) and p.is_file() and not p.is_symlink()))


_STATE_FILE = re.compile(r"\.?([A-Z]+)\.json(\.[a-z0-9_]{8}\.tmp)?")


def written_by_compose(rel: str) -> bool:
    """Whether `rel`, a file's path inside a compose OUT ('LY/LY_syn_0_3.jpg'), is one compose writes there: the
    class's images, the run files and the marker, the state folder's lock, state files and journals, or the
    temporary file of one."""
    *head, name = rel.split("/")
    if not head:
        own = (*RUN_FILES, MARKER)
        return name in own or (name.endswith(".tmp") and any(name.startswith(f".{n}.") for n in own))
    if len(head) == 1 and head[0] in CLASSES:
        return _image_name(head[0]).fullmatch(name) is not None
    if head == [STATE_DIR]:
        m = _STATE_FILE.fullmatch(name)
        return name == LOCK or (m is not None and m[1] in CLASSES)
    if head == [STATE_DIR, "journal"]:
        return _journal_name().fullmatch(name) is not None
    return False


#: The marker's temporary file (fsio.atomic_open): present only while a run writes the marker, or after it was killed.
_MARKER_TMP = re.compile(rf"\.{re.escape(MARKER)}\.[a-z0-9_]{{8}}\.tmp")


def _is_ours(out: Path) -> bool:
    """Whether OUT is already a compose output (True) or compose may start one there (False: OUT is missing, empty,
    or holds only a claim begun: the state folder, maybe with the marker's temporary file). Anything else gets the
    one-line refusal of outputs.claim. Decided from one listing of OUT (see claim_output for why that is safe)."""
    if out.exists() and not out.is_dir():
        claim(out, KIND, has_overwrite=True)  # refuses: a file, not a folder
    names = set(os.listdir(out)) if out.is_dir() else set()
    if not names or (STATE_DIR in names and all(n == STATE_DIR or _MARKER_TMP.fullmatch(n) for n in names)):
        return False
    return claim(out, KIND, has_overwrite=True) == "ours"


def claim_output(out: Path, cls: str, state: dict, overwrite: bool) -> None:
    """Make OUT ready for this run: new or empty, or a compose output (our marker) whose class folder, if any,
    compose wrote; a run of other settings needs overwrite, which removes only this class's images, state and
    journals. Anything else (a folder of the user's files, another kind of output): one-line UserError.

    The protocol, for runs started at the same instant (shards): each run (1) refuses a folder compose may not
    write, before it makes anything there; (2) makes OUT's state folder and takes the lock in it (flock, one run at a
    time); (3) under the lock, looks again, then writes the marker, then its settings (the state file) or, when a
    state file of the class is there, compares with it (resume, refuse, or overwrite). So another run sees OUT go
    through: missing or empty -> the state folder alone (+ the marker's temporary file) -> + the marker -> + images
    and run files. The state folder alone is a claim begun, never a user's folder; and since the marker is in place
    before any other name appears (and stays), a listing that shows any other name is answered by the marker: ours,
    or not ours. Both looks (_is_ours) decide from one listing: outputs.claim alone would take a claim begun (no
    marker yet) for a user's folder."""
    _is_ours(out)  # (1)
    (out / STATE_DIR).mkdir(parents=True, exist_ok=True)  # (2)
    with locked(out / STATE_DIR / LOCK):
        if _is_ours(out):  # (3)
            _check_class_folder(out, cls)
            try:
                old = _read_state(out, cls)
            except UserError:
                if not overwrite:
                    raise
                old = {}  # damaged: a run of unknown settings, which --overwrite replaces
            if old is not None:
                _resume_or_clear(out, cls, _in_current_form(old, state), state, overwrite)
        write_marker(out, KIND, [cls, STATE_DIR, *RUN_FILES])
        (out / STATE_DIR / "journal").mkdir(parents=True, exist_ok=True)
        write_text(_state_path(out, cls), json.dumps(state, indent=2, sort_keys=True) + "\n")


def _check_class_folder(out: Path, cls: str) -> None:
    """UserError when OUT/<cls>/ exists but compose's marker does not list it (the user's folder)."""
    if (out / cls).exists() and cls not in (read_marker(out) or {}).get("written", ()):
        raise UserError(
            f"{out / cls} was not written by naturalize compose; nothing in it is touched: move it "
            f"away or use another --out"
        )


def _in_current_form(old: dict, state: dict) -> dict:
    """An earlier run's state file `old` as this version writes it, to compare with this run's `state`. A key added
    since STATE_VERSION 2 that `old` lacks gets the value that earlier run had: a parameter, its default (the only
    value it had then); `segmentation`, this run's when the bank is the same (it is read from bank.json, which the
    bank's fingerprint covers). Every other key is compared as written: `code` too, so a run of another version of
    the compose code (or of one from before it was recorded) is not resumed."""
    current = dict(old)
    if "params" in old:
        current["params"] = ComposeParams().as_dict() | old["params"]
    if "segmentation" in state and old.get("bank") == state.get("bank"):
        current.setdefault("segmentation", state["segmentation"])
    return current


def _resume_or_clear(out: Path, cls: str, old: dict, state: dict, overwrite: bool) -> None:
    """Nothing when the recorded run `old` has this run's `state` (resume); otherwise UserError naming the settings
    that differ, or with overwrite, remove the class's images, state and journals (refused while OUT/<cls>/ holds a
    file compose did not write)."""
    changed = sorted(k for k in old.keys() | state.keys() if k not in old or k not in state or old[k] != state[k])
    if not changed:
        return
    if not overwrite and changed == ["code"]:
        raise UserError(
            f"{out} holds a compose run of {cls} made by another version of naturalize's compose code (state `code`): "
            f"resuming it would mix images of two versions; pass --overwrite to make them again, or use another --out"
        )
    if not overwrite:
        old_params = old.get("params", {})
        if "params" in changed:
            changed += [f"params.{k}" for k in sorted(state["params"]) if old_params.get(k) != state["params"][k]]
        raise UserError(
            f"{out} holds a compose run of {cls} with other settings ({', '.join(changed)}); "
            f"rerun with the same settings to resume, or pass --overwrite, or use another --out"
        )
    if foreign := foreign_files(out, cls):
        raise UserError(
            f"{foreign[0]} was not written by naturalize compose ({len(foreign)} such file(s) in "
            f"{out / cls}); nothing was removed: move them out of {out}, then rerun with --overwrite"
        )
    _clear_class(out, cls)


def load_entries(out: Path) -> list[dict]:
    """Every finished image's journal entry (annotate.journal_entry) in OUT (all classes): from the
    journals, for images whose file exists and that belong to the class's current run; sorted by class,
    then index."""
    states = {c: _read_state(out, c) for c in CLASSES}
    files = {c: {e.name for e in os.scandir(out / c)} for c, st in states.items() if st and (out / c).is_dir()}
    found: dict[tuple[str, int], dict] = {}
    for j in _journals(out):
        with j.open(encoding="utf-8", newline="") as f:
            for line in f:
                r = parse_journal_line(line)
                if r is None:
                    continue
                st = states.get(r["class"])
                if st is None or r["seed"] != st["seed"] or not 0 <= r["index"] < st["n"]:
                    continue
                key = (r["class"], r["index"])
                if key not in found and r["file"].rpartition("/")[2] in files.get(r["class"], ()):
                    found[key] = r
    return [found[k] for k in sorted(found, key=lambda k: (CLASSES.index(k[0]), k[1]))]


def _writer() -> str:
    """Who writes a run file, as its temporary file names it: '<host>.<pid>' (clear_stale_temps reads it back)."""
    return f"{socket.gethostname()}.{os.getpid()}"


def _write_run_file(path: Path, text: str) -> None:
    """Write a run file atomically through `.<name>.<host>.<pid>.tmp`, so a rerun can tell a killed writer's
    leftover from the temporary file of a shard still running (clear_stale_temps)."""
    replace_bytes(path, text.encode("utf-8"), owner=_writer())


def write_run_files(out: Path, pool: Pool | None = None, workers: list[BaseProcess] | None = None) -> list[dict]:
    """Rewrite OUT/manifest.jsonl and OUT/annotations.json from all journal entries (atomically): text the
    workers serialised, joined; returns the entries. With a worker pool (its processes `workers`, watched: one
    killed is procs.WorkerDied), one of its workers writes the COCO file meanwhile (_write_coco)."""
    coco_done = pool.apply_async(_write_coco, (str(out),)) if pool is not None else None
    entries = load_entries(out)
    _write_run_file(out / "manifest.jsonl", "".join(e["manifest"] + "\n" for e in entries))
    if coco_done is None:
        _write_run_file(out / "annotations.json", coco_text(entries))
    else:
        waited(coco_done, workers or [])
    return entries


def _write_coco(out: str) -> None:
    """OUT/annotations.json from OUT's journals (a worker's part of write_run_files)."""
    _write_run_file(Path(out) / "annotations.json", coco_text(load_entries(Path(out))))


def _gone(pid: int) -> bool:
    """Whether process `pid` of this host has ended (a zombie, ended but not yet reaped, counts as ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def clear_stale_temps(out: Path, cls: str, seed: int, fmt: str, indices: range) -> None:
    """Remove the temporary files a killed or interrupted run left in OUT: those of this run's images (`indices`,
    which no other shard makes) and those of the run files whose writer, a process of this host, has ended. The
    temporary files of a shard still running (other indices, another host, a live process) stay."""
    image_tmp = re.compile(rf"\.{re.escape(cls)}_syn_{seed}_(\d+)\.{re.escape(fmt)}\.\d+\.tmp")
    if (out / cls).is_dir():
        for e in os.scandir(out / cls):
            m = image_tmp.fullmatch(e.name)
            if m and int(m[1]) in indices:
                os.unlink(e.path)
    host = socket.gethostname()
    for name in RUN_FILES:
        for p in out.glob(f".{name}.*.tmp"):
            writer, _, pid = p.name[len(name) + 2 : -len(".tmp")].rpartition(".")
            if writer == host and pid.isdigit() and _gone(int(pid)):
                p.unlink(missing_ok=True)


def check_counts(bank: Bank, cls: str, params: ComposeParams) -> None:
    """UserError for cell counts that would give wrong images: no cell of the class (the image would be filed
    under a class it does not show), or more red cells than the image area can hold."""
    if params.wbc < 1:
        raise UserError(f"--wbc {params.wbc}: an image filed under {cls} must show its {cls} cell; use --wbc 1 or more")
    check_scene_counts(params)
    areas = sorted(r.area for r in bank.select("RBC"))
    if params.places_rbc and params.rbc and areas:
        w, h = params.canvas
        most = int(MAX_RBC_FILL * w * h / areas[len(areas) // 2])
        if params.rbc > most:
            raise UserError(
                f"--rbc {params.rbc}: that many red cells of this bank would cover more than the whole "
                f"{w}x{h} image; use --rbc {most} or fewer (PBC crops hold about 8-15)"
            )


def compose_class(
    bank: Bank | str | Path,
    cls: str,
    n: int,
    out: str | Path,
    seed: int = 0,
    params: ComposeParams | None = None,
    shard: tuple[int, int] = (1, 1),
    workers: int = 2,
    overwrite: bool = False,
    progress: bool = True,
    warn: Callable[[str], None] | None = None,
) -> list[Path]:
    """Make images [shard's block of 0..n-1] of class `cls` into `out` (see module doc); returns the paths
    of this shard's images. Raises UserError for bad input (one line); `warn` gets one line when some images
    of this run hold fewer red cells than asked (no room left for them), and one when images of the class in OUT
    (this run's, all shards) are byte-identical to one another (dupes: a bank too small for n)."""
    params = params or ComposeParams()
    cls = normalize_class(cls)
    if cls not in CLASSES:
        raise UserError(f"unknown class {cls!r}; use one of {', '.join(CLASSES)}")
    if n <= 0:
        raise UserError(f"--n {n}: the number of images must be at least 1")
    check_format_options(params)
    k, parts = shard
    if not 1 <= k <= parts:
        raise UserError(f"--shard {k}/{parts}: need 1 <= K <= N")
    if len(shard_range(n, shard)) > MAX_RUN_IMAGES:
        raise UserError(
            f"--n {n}: one run makes at most {MAX_RUN_IMAGES:,} images; split it with --shard K/N "
            f"(e.g. --shard 1/{-(-n // MAX_RUN_IMAGES)})"
        )
    out = Path(out)
    check_disjoint(out, [("the bank", bank.root if isinstance(bank, Bank) else bank)])
    bank = bank if isinstance(bank, Bank) else Bank.open(bank)
    check_scene_class(cls, params.scene)
    check_class(bank, cls)
    check_counts(bank, cls, params)
    state = {
        "version": STATE_VERSION,
        "code": code_digest(*COMPOSE_CODE),
        "class": cls,
        "seed": seed,
        "n": n,
        "params": params.as_dict(),
        "bank": bank_fingerprint(bank),
        "segmentation": segmentation_origin(bank),
    }
    claim_output(out, cls, state, overwrite)
    indices = shard_range(n, shard)
    clear_stale_temps(out, cls, seed, params.fmt, indices)
    done = {r["index"] for r in load_entries(out) if r["class"] == cls}
    todo = [i for i in indices if i not in done]
    finished: list[list[dict]] = []
    if todo:
        short = _run(
            bank,
            cls,
            seed,
            params,
            out,
            todo,
            workers,
            progress,
            finish=lambda pool, workers: finished.append(write_run_files(out, pool, workers)),
        )
        if short and warn is not None:
            warn(
                f"warning: {len(short)} of {len(todo)} images hold fewer red cells than --rbc {params.rbc} asked "
                f"(no room left on the plate; as few as {params.rbc - max(short)}); ask for fewer red cells to get "
                f"exactly that many"
            )
    else:
        finished.append(write_run_files(out))
    mine = [e for e in finished[0] if e["class"] == cls]
    said = duplicates_warning(identical_groups(out, mine), len(mine), cls, out, params.scene, n)
    if said and warn is not None:
        warn(said)
    return [out / cls / image_name(cls, seed, i, params.fmt) for i in indices]


def run_summary(out: Path, cls: str, n: int, shard: tuple[int, int], seed: int, fmt: str) -> str:
    """One line after a compose run: which images this shard covers (all now in OUT, made or resumed) and how many
    of the run's n images of `cls` OUT holds (other shards' included; counted by name in OUT/<cls>/, not by
    reading the journals a second time)."""
    present = {e.name for e in os.scandir(out / cls)} if (out / cls).is_dir() else set()
    held = sum(image_name(cls, seed, i, fmt) in present for i in range(n))
    indices = shard_range(n, shard)
    k, parts = shard
    if parts == 1:
        files = f"wrote {out / 'manifest.jsonl'} and {out / 'annotations.json'}"
        return f"{held} {cls} images in {out} (indices 0..{n - 1}); {files}"
    if indices:
        mine = (
            f"shard {k}/{parts}: its {len(indices)} images (indices {indices.start}..{indices.stop - 1}) are in {out}"
        )
    else:
        mine = f"shard {k}/{parts}: no image to make (the run's {n} images fill fewer than {parts} shards)"
    return (
        f"{mine}; {out} holds {held} of the run's {n} {cls} images; "
        f"wrote {out / 'manifest.jsonl'} and {out / 'annotations.json'}"
    )


#: A run of at least this many images uses nearly every sprite variant: they are warped before it starts.
WARM_FROM = 1000
#: Workers are forked, sharing this process's library, where that is safe (Linux); elsewhere they are
#: spawned and each reads the bank itself.
FORK_WORKERS = sys.platform == "linux"


def _run(
    bank: Bank,
    cls: str,
    seed: int,
    params: ComposeParams,
    out: Path,
    todo: list[int],
    workers: int,
    progress: bool,
    finish: Callable[[Pool | None, list[BaseProcess]], object],
) -> list[int]:
    """Compose `todo` into OUT, then call finish(pool, workers) (the worker pool, or None, and its processes) before
    the workers stop; a worker killed meanwhile is procs.WorkerDied.
    Several workers on Linux: this process reads the bank (and warps the sprite variants of a long run) on
    `workers` threads, then forks workers that share it all; elsewhere each spawned worker reads the bank
    itself."""
    from tqdm import tqdm

    (out / cls).mkdir(parents=True, exist_ok=True)
    args = (str(bank.root), cls, seed, params, str(out))
    workers = max(1, min(workers, len(todo) // 32 or 1))
    fork = workers > 1 and FORK_WORKERS
    cv_threads = cv2.getNumThreads()
    pool = None
    procs: list[BaseProcess] = []
    try:
        if workers == 1 or fork:
            cv2.setNumThreads(1)  # threads of our own decode and warp the files (and forked workers need it)
            _load(bank, *args[1:], threads=workers, warm=len(todo) >= WARM_FROM)
        done: Iterator[int]
        if workers == 1:
            _open_journal(str(out), cls)
            done = map(_work, todo)
        elif fork:  # OpenCV's thread pool does not survive a fork: it was stopped above until the workers are gone
            pool, procs = started(
                lambda: pool_context("fork").Pool(workers, initializer=_open_journal, initargs=(str(out), cls))
            )
        else:
            pool, procs = started(lambda: pool_context("spawn").Pool(workers, initializer=_init_spawned, initargs=args))
        if pool is not None:  # chunks of 64: fewer, larger messages cost the parent a third of the CPU of 16
            chunk = max(1, min(64, len(todo) // (8 * workers)))
            done = watched(pool, procs, _work, todo, chunk, ordered=False)  # a killed worker: WorkerDied
        short: list[int] = []
        with tqdm(total=len(todo), desc=f"compose {cls}", unit="img", disable=not progress, smoothing=0.05) as bar:
            for missing in done:
                bar.update(1)
                if missing:
                    short.append(missing)
        finish(pool, procs)
        return short
    finally:
        if pool is not None:
            pool.terminate()  # every result is in (or the run failed): stop the workers
            pool.join()
        cv2.setNumThreads(cv_threads)
        _close()  # this process's journal and library
