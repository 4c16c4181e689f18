"""File I/O every command shares: atomic writes (a temporary file beside the target, renamed over it:
`atomic_open`, `atomic_path`, `replace_bytes`, `write_*`) and the temp files a killed run left
(`remove_atomic_temps`; `temp_target` reads such a name), `link_or_copy`, `file_digests` (one chunked read, several
hashes), `locked` (a file lock), `naming` (a write that found no room names its file: `NO_SPACE`), `read_json` and
`read_object` (a damaged file, or for read_object one that holds no JSON object, is a UserError) and `UserError`
itself (one-line errors, exit code 2)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from naturalize.paths import fit_name

#: At most this many bytes of the target's name go into a temp file's name (a name near the file system's limit of
#: 255 must still get a temp file beside it).
TEMP_STEM = 200

_UMASK = os.umask(0o022)
os.umask(_UMASK)

#: The errno values of a write that found no room: a full disk, a file size limit (`ulimit -f`), a disk quota.
NO_SPACE = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


@contextlib.contextmanager
def naming(path: str | os.PathLike) -> Iterator[None]:
    """Within: an OSError of NO_SPACE gets `path` as its filename (os.write and a file object's write name no file,
    mkstemp names the hidden temp file), so the command's one error line (clihelp.run_app) names the file the user
    would look for. Other errors pass unchanged."""
    try:
        yield
    except OSError as e:
        if e.errno in NO_SPACE:
            e.filename = os.fspath(path)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temp file beside `path`; on clean exit it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with naming(path):
        fd, tmp = tempfile.mkstemp(prefix=f".{fit_name(path.name, TEMP_STEM)}.", suffix=".tmp", dir=path.parent)
        try:
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
            with os.fdopen(fd, mode, **kwargs) as f:
                yield f
                f.flush()
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


#: The temporary file atomic_open makes beside NAME: `.NAME.` + mkstemp's 8 random characters + `.tmp`.
_ATOMIC_TMP = "[a-z0-9_]{8}"


def remove_atomic_temps(folder: str | os.PathLike, names: Iterable[str], suffix: str = ".tmp") -> list[Path]:
    """Remove from `folder` the temporary files that atomic_open (atomic_path with `suffix`) left beside each of
    `names` when the process writing them was killed (`.NAME.XXXXXXXX.tmp`); only for outputs one process writes
    at a time (a rerun clears them before it writes). Returns the removed paths."""
    folder = Path(folder)
    pattern = re.compile(rf"\.({'|'.join(map(re.escape, names))})\.{_ATOMIC_TMP}{re.escape(suffix)}")
    gone = sorted(p for p in folder.glob(f".*{suffix}") if pattern.fullmatch(p.name) and p.is_file())
    for p in gone:
        p.unlink(missing_ok=True)
    return gone


_TEMP_NAME = rf"\.(.+)\.({_ATOMIC_TMP}|\d+)"  # + the suffix
_TMP_NAME = re.compile(rf"{_TEMP_NAME}\.tmp")


def temp_target(name: str, suffix: str = ".tmp") -> str | None:
    """The name of the file that a temporary file named `name` was to replace (atomic_open's `.NAME.XXXXXXXX.tmp`,
    replace_bytes' `.NAME.<pid>.tmp`, atomic_path's `.NAME.XXXXXXXX<suffix>`; NAME as fit_name shortened it), or
    None when `name` is not of that form."""
    m = (_TMP_NAME if suffix == ".tmp" else re.compile(_TEMP_NAME + re.escape(suffix))).fullmatch(name)
    return m[1] if m else None


def write_all(fd: int, data: bytes, path: str | os.PathLike | None = None) -> None:
    """Write all of `data` to the open file descriptor `fd` (os.write may write less than asked); `path`, the file
    `fd` is open on, is named by an error of a full disk (naming)."""
    view = memoryview(data)
    with naming(path) if path is not None else contextlib.nullcontext():
        while view:
            view = view[os.write(fd, view) :]


def replace_bytes(path: str | os.PathLike, data: bytes, owner: str | None = None) -> None:
    """Atomic like write_bytes, for hot loops (thousands of sprites or images a run): a temp name beside `path`
    naming its writer, `.<name>.<owner>.tmp` (`owner`: the process id by default), instead of mkstemp; permissions
    from the umask, no folder creation (the folder must exist). The temp file goes on an error or Ctrl-C; one a
    killed run left is the caller's to clear on resume."""
    head, name = os.path.split(os.fspath(path))
    tmp = os.path.join(head, f".{fit_name(name, TEMP_STEM)}.{owner or os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            write_all(fd, data, path)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """A fresh, not yet existing temp path beside `path` (ending in `suffix`, for writers that pick the format by
    name, e.g. Keras's `model.save`) for a writer that takes a path; on clean exit it replaces `path`, on error
    it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with naming(path):
        fd, name = tempfile.mkstemp(prefix=f".{fit_name(path.name, TEMP_STEM)}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    os.unlink(name)
    tmp = Path(name)
    try:
        with naming(path):
            yield tmp
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def link_or_copy(src: str | os.PathLike, dst: str | os.PathLike, symbolic: bool = False) -> None:
    """Make `dst` a hard link to `src` (a symbolic link to its resolved path with `symbolic`); copy it, with
    its times, where links fail (another file system, no link support). `dst`'s folder must exist. A `src` that is
    a symbolic link (the demo's pbc-subset/) gives a link to the file it points to: os.link linked the symbolic link
    itself (Linux link(2)), so `dst` was a symbolic link, which every --overwrite refuses as not the tool's."""
    try:
        if symbolic:
            os.symlink(Path(src).resolve(), dst)
        else:
            os.link(Path(src).resolve(), dst)
    except OSError:
        with naming(dst):
            shutil.copy2(src, dst)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def file_digests(path: Path, names: tuple[str, ...] = ("md5", "sha256")) -> tuple[str, ...]:
    """The hex digests `names` (hashlib names; default (md5, sha256)) of a file, read once in 1 MiB chunks."""
    hashes = [hashlib.new(name, usedforsecurity=False) for name in names]
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            for h in hashes:
                h.update(chunk)
    return tuple(h.hexdigest() for h in hashes)


@contextlib.contextmanager
def locked(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on file `path` (created if missing, left in place) within; waits while another process
    holds it. fcntl.flock: released when the process ends, however it ends; on NFS Linux takes it on the server, so
    processes of other hosts wait too. Where there is no fcntl (Windows), no lock."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8, '\\n' newlines) to `path` atomically."""
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented, key-sorted JSON atomically (same object -> same bytes)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike, damaged: str) -> Any:
    """The JSON in file `path`; UserError(`damaged`) when it is not JSON (or not UTF-8)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except ValueError:  # UnicodeDecodeError included
        raise UserError(damaged) from None


def read_object(path: str | os.PathLike, fix: str) -> dict:
    """The JSON object in file `path` (a settings or metadata file); UserError "`path` is damaged (not JSON); `fix`"
    when it is not JSON, "`path` is not a JSON object; `fix`" when it is other JSON (a list, a number: edited by
    hand, or another tool's file under the same name)."""
    data = read_json(path, f"{path} is damaged (not JSON); {fix}")
    if not isinstance(data, dict):
        raise UserError(f"{path} is not a JSON object; {fix}")
    return data


class UserError(Exception):
    """A problem with the user's input: the CLI prints its one-line message and exits with 2."""
