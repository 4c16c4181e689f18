"""The output-folder guard shared by every command that writes (naturalize and classify).

Two rules keep a user's files safe:

* An output never overlaps an input: it may not be equal to, inside, or an ancestor of any input
  (`check_disjoint`), checked before any work starts.
* Every output folder carries a marker, OUT/.naturalize-output.json, written by the tool: its kind
  (bank, compose, dataset, prepared, demo, classify-run, ...), the tool version and the top-level names it
  wrote there. A folder is written into only when it is new, empty or carries a marker of the same kind
  (`claim`); `--overwrite` removes only the names that marker lists (`remove_written`). A non-empty folder
  without the marker, or with another kind's, is refused with one line, with or without --overwrite.
  `claim_settled` is that sequence for an output that records its settings (a dataset, a demo, a drawn set).

File outputs (a PNG, a CSV, a Markdown table) are checked by `check_file_output` before the work starts.
A command that fails before writing anything but the marker leaves no folder behind (`dropped_if_unused`).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from naturalize.fsio import UserError, read_object, write_json

MARKER = ".naturalize-output.json"
MARKER_FORMAT = "naturalize-output/1"


def _version() -> str:
    from naturalize import __version__

    return __version__


def read_marker(folder: str | os.PathLike) -> dict | None:
    """The marker of `folder`, or None when it has none. A damaged marker is a UserError (never guessed)."""
    path = Path(folder) / MARKER
    if not path.is_file():
        return None
    meta = read_object(path, "the folder's owner is unknown, so nothing in it is touched: choose another output folder")
    if meta.get("format") != MARKER_FORMAT or not isinstance(meta.get("written"), list):
        raise UserError(f"{path} is not a naturalize output marker; choose another output folder")
    return meta


def write_marker(folder: str | os.PathLike, kind: str, written: Iterable[str]) -> None:
    """Record (atomically) that the tool owns `folder` as `kind` and wrote these top-level names in it
    (merged with the names an earlier marker of the same kind listed)."""
    folder = Path(folder)
    old = read_marker(folder)
    names = set(written) | (set(old["written"]) if old and old.get("kind") == kind else set())
    folder.mkdir(parents=True, exist_ok=True)
    write_json(
        folder / MARKER,
        {"format": MARKER_FORMAT, "tool": "naturalize", "version": _version(), "kind": kind, "written": sorted(names)},
    )


def _visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != MARKER)


def claim(folder: str | os.PathLike, kind: str, option: str = "--out", *, has_overwrite: bool = False) -> str:
    """Whether the tool may write into `folder` as `kind`: 'new' (missing or empty) or 'ours' (our marker of
    this kind). Raises a UserError that describes the folder truthfully otherwise (`has_overwrite`: the command
    has an --overwrite option, so the refusal says it does not help). Writes nothing."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{option} {folder} is a file, not a folder; choose a folder path")
    if not folder.exists() or not any(folder.iterdir()):
        return "new"
    meta = read_marker(folder)
    if meta is None:
        untouched = "nothing in it is touched, even with --overwrite" if has_overwrite else "nothing in it is touched"
        raise UserError(
            f"{option} {folder} is not empty and was not written by naturalize (no {MARKER}); "
            f"{untouched}: choose a new or empty folder"
        )
    if meta.get("kind") != kind:
        raise UserError(
            f"{option} {folder} holds a naturalize {meta.get('kind')} output, not a {kind}; choose another folder"
        )
    return "ours"


@contextmanager
def dropped_if_unused(folder: str | os.PathLike) -> Iterator[None]:
    """Around the work of a command that writes `folder`'s marker, then its outputs: when the work fails (any
    exception, Ctrl-C too) and `folder` holds nothing but a marker written in this run, the marker is removed, and
    so are the folders this run created (`folder`, its missing parents) once empty. Nothing else is touched."""
    folder = Path(folder)
    created = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    had_marker = (folder / MARKER).exists()
    try:
        yield
    except BaseException:
        if not had_marker and folder.is_dir() and not _visible(folder):
            (folder / MARKER).unlink(missing_ok=True)
            for p in created:
                try:
                    p.rmdir()  # only ever an empty folder
                except OSError:
                    break
        raise


def not_owned(folder: str | os.PathLike, names: Iterable[str], owned: Callable[[str], bool]) -> list[Path]:
    """What the folders among `names` in `folder` hold that the tool did not write there: every file whose path
    relative to `folder` ('sprites/WBC/LY/x.png') `owned` rejects, and every symbolic link (the tool writes none
    there; never followed); sorted. Folders themselves are not judged (an empty one is harmless)."""
    folder = Path(folder)
    found: list[Path] = []
    for name in names:
        top = folder / name
        if top.is_symlink() or not top.is_dir():
            continue
        for here, dirs, files in os.walk(top):  # never into a linked folder: it is listed among `dirs`
            base = Path(here)
            found += [base / d for d in dirs if (base / d).is_symlink()]
            found += [
                base / f
                for f in files
                if (base / f).is_symlink() or not owned((base / f).relative_to(folder).as_posix())
            ]
    return sorted(found)


def refuse_foreign(foreign: Sequence[Path], folder: str | os.PathLike, what: str) -> None:
    """UserError naming the first of `foreign` (files the tool did not write inside the folders it would remove from
    `folder`; `what`: the command, e.g. 'naturalize segment'), when there is any: nothing is removed."""
    if foreign:
        raise UserError(
            f"{foreign[0]} was not written by {what} ({len(foreign)} such file(s) in the folders of {folder} that "
            f"--overwrite removes); nothing was removed: move them out of {folder}, then rerun"
        )


def remove_written(
    folder: str | os.PathLike,
    kind: str,
    names: Sequence[str] | None = None,
    owned: Callable[[str], bool] | None = None,
) -> list[str]:
    """Remove what the marker of `folder` says the tool wrote (only `names` among them, when given); files the
    tool did not write stay. With `owned` (relative path -> whether the tool writes such a file, see not_owned), a
    listed folder holding any other file or a link is refused first (UserError, nothing removed). Returns the
    removed names. The folder must carry our marker of `kind`."""
    folder = Path(folder)
    meta = read_marker(folder)
    if meta is None or meta.get("kind") != kind:
        raise UserError(f"{folder} carries no naturalize {kind} marker; nothing removed")
    written = set(meta["written"])
    chosen = [n for n in (names if names is not None else sorted(written)) if n in written]
    safe = [n for n in chosen if "/" not in n and n not in ("", ".", "..")]  # a hand-edited marker never reaches
    if owned is not None:  # outside the folder's own entries
        refuse_foreign(not_owned(folder, safe, owned), folder, f"naturalize ({kind})")
    for name in safe:
        target = folder / name
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.is_dir():
            shutil.rmtree(target)
    write_json(folder / MARKER, {**meta, "written": sorted(written - set(chosen))})
    return chosen


def read_record(path: str | os.PathLike) -> dict | None:
    """The JSON object in `path` (an earlier run's record of its settings), or None when it is missing, unreadable,
    not JSON or not an object."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def claim_settled(
    out: str | os.PathLike,
    kind: str,
    written: Iterable[str],
    *,
    record: str,
    differs: Callable[[dict], bool],
    overwrite: bool,
    refusal: str,
    option: str = "--out",
    redo_same: bool = True,
    owned: Callable[[str], bool] | None = None,
) -> None:
    """Make folder `out` the tool's `kind` output before any work: new or empty, or ours (`claim`). When ours,
    `differs(read_record(out / record))` says whether it was made with other settings (a missing or unreadable
    record counts as the same settings: an interrupted first run resumes): then it is refused with
    UserError(`refusal`) unless `overwrite`; `overwrite` removes what the tool wrote there (also for the same
    settings unless `redo_same` is False; with `owned`, refused while its folders hold a file the tool did not
    write: remove_written). Then the marker lists `written`."""
    out = Path(out)
    if claim(out, kind, option, has_overwrite=True) == "ours":
        old = read_record(out / record)
        changed = old is not None and differs(old)
        if changed and not overwrite:
            raise UserError(refusal)
        if overwrite and (changed or redo_same):
            remove_written(out, kind, owned=owned)
    write_marker(out, kind, written)


def _resolved(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(Path(path).expanduser())).resolve()


def overlap(out: str | os.PathLike, inp: str | os.PathLike) -> str | None:
    """How `out` overlaps `inp`: 'is', 'is inside', 'contains', or None."""
    o, i = _resolved(out), _resolved(inp)
    if o == i:
        return "is"
    if i in o.parents:
        return "is inside"
    if o in i.parents:
        return "contains"
    return None


def check_disjoint(
    out: str | os.PathLike,
    inputs: Iterable[tuple[str, str | os.PathLike | None]],
    option: str = "--out",
    owners: Iterable[str | os.PathLike] = (),
) -> None:
    """UserError when output `out` is equal to, inside, or an ancestor of any input. `inputs` are (what, path)
    pairs (None paths are skipped); `owners` are input folders the output may lie inside (a run directory
    holding its own eval/ folder) but still never equal or contain."""
    for what, path in list(inputs) + [("the input", p) for p in owners]:
        if path is None:
            continue
        how = overlap(out, path)
        if how is None or (how == "is inside" and any(overlap(path, p) == "is" for p in owners)):
            continue
        raise UserError(f"{option} {out} {how} {what} {path}; inputs are never written to: choose an output outside it")


def check_file_output(
    out: str | os.PathLike,
    suffixes: Sequence[str],
    option: str = "--out",
    inputs: Iterable[tuple[str, str | os.PathLike | None]] = (),
) -> None:
    """A file output: UserError when it is a folder, has another suffix, or overlaps an input."""
    out = Path(out)
    if out.is_dir():
        raise UserError(f"{option} {out} is a folder; give a file path such as {out / ('out' + suffixes[0])}")
    if out.suffix.lower() not in suffixes:
        raise UserError(f"{option} {out} must end in {' or '.join(suffixes)} (it is replaced if it exists)")
    if out.parent.exists() and not out.parent.is_dir():
        raise UserError(f"{option} {out}: {out.parent} is a file, not a folder; choose another path")
    check_disjoint(out, inputs, option)
