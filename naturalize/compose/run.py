"""The compose shell: many images of one class from a bank, in worker processes, resumable and sharded.

In: a Bank (or its path), class, n, output directory, seed, ComposeParams, shard (k, N), workers.
Out: OUT/<CLASS>/<CLASS>_syn_<seed>_<index>.<jpg|png>, OUT/manifest.jsonl, OUT/annotations.json (COCO),
and OUT/.naturalize-compose/ (the run's parameters per class and journals of per-image records).

Image i depends only on (bank, parameters, seed, class, i): its generator is
numpy.random.default_rng([seed, class index, i]). A shard makes the indices of its contiguous block;
an interrupted run resumes (images with a record are skipped); the manifest and the COCO file are
rebuilt at the end of every run from all records in OUT, sorted, so any split of the work into shards
and reruns writes the same files. Each process appends to its own journal, one line per finished image
holding its manifest line and COCO annotations already serialised (annotate.journal_entry), so the
rebuild only joins text.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import socket
from pathlib import Path

import cv2
import numpy as np

from naturalize.bank import Bank
from naturalize.classes import CLASSES, PREFIX_TO_CLASS
from naturalize.compose.annotate import JSON_SEPARATORS, coco_text, image_record, journal_entry
from naturalize.compose.core import compose_image
from naturalize.compose.library import Library, bank_fingerprint, check_class, load_library
from naturalize.compose.params import FORMATS, ComposeParams, shard_range
from naturalize.fsio import UserError, write_text

STATE_DIR = ".naturalize-compose"
STATE_VERSION = 1

# what a worker composes with: set once per process by _init
_WORKER: dict = {}


def image_name(cls: str, seed: int, index: int, fmt: str) -> str:
    """'PMY_syn_0_17.jpg'."""
    return f"{cls}_syn_{seed}_{index}.{fmt}"


def encode(image: np.ndarray, params: ComposeParams) -> bytes:
    """BGR uint8 image -> JPEG (quality params.quality) or PNG bytes."""
    flags = [cv2.IMWRITE_JPEG_QUALITY, params.quality] if params.fmt == "jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 3]
    ok, buf = cv2.imencode(FORMATS[params.fmt], image, flags)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {params.fmt} image")
    return buf.tobytes()


def render(lib: Library, params: ComposeParams, seed: int, index: int) -> tuple[np.ndarray, dict]:
    """Compose image `index` of (seed, class): the BGR image and its record (file relative to OUT)."""
    comp = compose_image(lib, np.random.default_rng([seed, CLASSES.index(lib.cls), index]), params)
    file = f"{lib.cls}/{image_name(lib.cls, seed, index, params.fmt)}"
    return comp.image, image_record(comp, lib, file, seed, index)


def _init(bank_root: str, cls: str, seed: int, params: ComposeParams, out: str, worker: bool = True) -> None:
    """Get this process ready to compose (worker: one OpenCV thread); it appends to its own journal."""
    if worker:
        cv2.setNumThreads(1)  # one process per core already
    key = (bank_root, cls, seed, params)
    if _WORKER.get("key") != key:  # read the bank once per process and run
        _WORKER.update(key=key, lib=load_library(Bank.open(bank_root), cls, seed, params))
    journal = Path(out) / STATE_DIR / "journal" / f"{cls}.{socket.gethostname()}.{os.getpid()}.jsonl"
    _WORKER.update(params=params, seed=seed, out=Path(out),
                   journal=os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))


def _close() -> None:
    """Close this process's journal and free its library."""
    if "journal" in _WORKER:
        os.close(_WORKER["journal"])
    _WORKER.clear()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_atomic(path: str, data: bytes) -> None:
    """Write `data` to a hidden temporary file beside `path`, then rename it over `path` (the folder exists)."""
    head, _, name = path.rpartition("/")
    tmp = f"{head}/.{name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _write_all(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _work(index: int) -> None:
    """Worker: compose, write the image atomically, then append its journal entry (one JSON line) to the
    process's journal (a line cut short by a kill is skipped when read: the image is simply made again)."""
    image, record = render(_WORKER["lib"], _WORKER["params"], _WORKER["seed"], index)
    _write_atomic(f"{_WORKER['out']}/{record['file']}", encode(image, _WORKER["params"]))
    line = json.dumps(journal_entry(record), separators=JSON_SEPARATORS) + "\n"
    _write_all(_WORKER["journal"], line.encode("ascii"))


def _state_path(out: Path, cls: str) -> Path:
    return out / STATE_DIR / f"{cls}.json"


def _journals(out: Path, cls: str | None = None) -> list[Path]:
    d = out / STATE_DIR / "journal"
    return sorted(d.glob(f"{cls or '*'}.*.jsonl")) if d.is_dir() else []


def _read_state(out: Path, cls: str) -> dict | None:
    p = _state_path(out, cls)
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None


def _clear_class(out: Path, cls: str) -> None:
    shutil.rmtree(out / cls, ignore_errors=True)
    _state_path(out, cls).unlink(missing_ok=True)
    for j in _journals(out, cls):
        j.unlink()


def claim_output(out: Path, cls: str, state: dict, overwrite: bool) -> None:
    """Make OUT ready for this run: empty, a resumable run of the same parameters, or a compose output
    without this class; with overwrite, this class's earlier outputs go. Else one-line UserError."""
    old = _read_state(out, cls)
    if old is not None and old != state:
        if not overwrite:
            diff = sorted(k for k in set(old) | set(state) if old.get(k) != state.get(k))
            if "params" in diff:
                diff += [f"params.{k}" for k in sorted(state["params"]) if old.get("params", {}).get(k) != state["params"][k]]
            raise UserError(f"{out} holds a compose run of {cls} with other settings ({', '.join(diff)}); "
                            f"rerun with the same settings to resume, or pass --overwrite, or use another --out")
        _clear_class(out, cls)
    elif old is None:
        busy = out.is_dir() and any(out.iterdir())
        ours = (out / STATE_DIR).is_dir() and not ((out / cls).is_dir() and any((out / cls).iterdir()))
        if busy and not ours:
            if not overwrite:
                raise UserError(f"{out} is not empty and holds no compose run of {cls}; "
                                f"use an empty --out, or --overwrite to write into it")
            _clear_class(out, cls)
    (out / STATE_DIR / "journal").mkdir(parents=True, exist_ok=True)
    write_text(_state_path(out, cls), json.dumps(state, indent=2, sort_keys=True) + "\n")


def load_entries(out: Path) -> list[dict]:
    """Every finished image's journal entry (annotate.journal_entry) in OUT (all classes): from the
    journals, for images whose file exists and that belong to the class's current run; sorted by class,
    then index. (Journals of earlier versions hold whole records: they are converted.)"""
    states = {c: _read_state(out, c) for c in CLASSES}
    found: dict[tuple[str, int], dict] = {}
    for j in _journals(out):
        with j.open(encoding="utf-8") as f:
            for line in f:
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by an interrupted run
                    continue
                if "manifest" not in r:
                    r = journal_entry(r)
                st = states.get(r.get("class"))
                if st is None or r["seed"] != st["seed"] or not 0 <= r["index"] < st["n"]:
                    continue
                key = (r["class"], r["index"])
                if key not in found and (out / r["file"]).is_file():
                    found[key] = r
    return [found[k] for k in sorted(found, key=lambda k: (CLASSES.index(k[0]), k[1]))]


def write_run_files(out: Path) -> list[dict]:
    """Rewrite OUT/manifest.jsonl and OUT/annotations.json from all journal entries (atomically): text the
    workers serialised, joined; returns the entries."""
    entries = load_entries(out)
    write_text(out / "manifest.jsonl", "".join(e["manifest"] + "\n" for e in entries))
    write_text(out / "annotations.json", coco_text(entries))
    return entries


def normalise_class(text: str) -> str:
    """'pmy' -> 'PMY', 'platelet' -> 'PLT'; UserError for anything else."""
    cls = PREFIX_TO_CLASS.get(text.strip().upper(), text.strip().upper())
    if cls not in CLASSES:
        raise UserError(f"unknown class {text!r}; use one of {', '.join(CLASSES)}")
    return cls


def compose_class(bank: Bank | str | Path, cls: str, n: int, out: str | Path, seed: int = 0,
                  params: ComposeParams | None = None, shard: tuple[int, int] = (1, 1), workers: int = 2,
                  overwrite: bool = False, progress: bool = True) -> list[Path]:
    """Make images [shard's block of 0..n-1] of class `cls` into `out` (see module doc); returns the paths
    of this shard's images. Raises UserError for bad input (one line)."""
    params = params or ComposeParams()
    cls = normalise_class(cls)
    if n <= 0:
        raise UserError(f"--n {n}: the number of images must be at least 1")
    k, parts = shard
    if not 1 <= k <= parts:
        raise UserError(f"--shard {k}/{parts}: need 1 <= K <= N")
    bank = bank if isinstance(bank, Bank) else Bank.open(bank)
    check_class(bank, cls)
    out = Path(out)
    state = {"version": STATE_VERSION, "class": cls, "seed": seed, "n": n, "params": params.as_dict(),
             "bank": bank_fingerprint(bank)}
    claim_output(out, cls, state, overwrite)
    indices = shard_range(n, shard)
    done = {r["index"] for r in load_entries(out) if r["class"] == cls}
    todo = [i for i in indices if i not in done]
    if todo:
        _run(bank, cls, seed, params, out, todo, workers, progress)
    write_run_files(out)
    return [out / cls / image_name(cls, seed, i, params.fmt) for i in indices]


def _run(bank: Bank, cls: str, seed: int, params: ComposeParams, out: Path, todo: list[int], workers: int,
         progress: bool) -> None:
    from tqdm import tqdm

    (out / cls).mkdir(parents=True, exist_ok=True)
    args = (str(bank.root), cls, seed, params, str(out))
    bar = tqdm(total=len(todo), desc=f"compose {cls}", unit="img", disable=not progress, smoothing=0.05)
    workers = max(1, min(workers, len(todo) // 32 or 1))
    if workers == 1:
        _init(*args, worker=False)
        done = map(_work, todo)
        pool = None
    else:
        # spawn, not fork: OpenCV's thread pool does not survive a fork; each worker reads the bank once
        pool = mp.get_context("spawn").Pool(workers, initializer=_init, initargs=args)
        done = pool.imap_unordered(_work, todo, chunksize=16)
    try:
        for _ in done:
            bar.update(1)
    finally:
        if pool is not None:
            pool.terminate()  # every result is in (or the run failed): stop the workers
            pool.join()
        _close()  # this process's journal and library
        bar.close()
