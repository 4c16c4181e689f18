"""What both command lines share: the app's help layout, the version option, example epilogs and the entry point
that turns a UserError into one `error:` line (exit code 2); running out of memory, a write that found no room (a
full disk, a quota, a file size limit) and a worker process killed mid-run each into one `error:` line (exit code
1); and Ctrl-C into one `interrupted` line (exit code 130).

Help is rendered in click's plain layout (`HELP_MARKUP = None`): no `<bool>` column on flags, and
bracketed text such as `[default: ...]` is shown as written instead of being taken for rich markup.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import re
import signal
import sys
import threading
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer

from naturalize import __version__
from naturalize.fsio import NO_SPACE, UserError
from naturalize.procs import WorkerDied, error_chain

#: Typer's rich_markup_mode for both apps: None = click's plain help layout.
HELP_MARKUP = None
#: Click context settings for both apps: help up to 110 columns wide, -h as --help.
CONTEXT = {"max_content_width": 110, "help_option_names": ["-h", "--help"]}


def examples(*lines: str) -> str:
    """Command lines -> an epilog "Examples:" block that click prints line by line (no rewrapping)."""
    return "Examples:\n\n\b\n" + "\n".join(f"  {line}" for line in lines)


def new_app(about: str, *example_lines: str) -> typer.Typer:
    """A Typer app in the shared help layout: `about` as its help, the example command lines as its epilog."""
    return typer.Typer(
        add_completion=False,
        no_args_is_help=True,
        rich_markup_mode=HELP_MARKUP,
        context_settings=CONTEXT,
        help=about,
        epilog=examples(*example_lines),
    )


class Interrupted(BaseException):
    """Ctrl-C in a command run by run_app. Not a KeyboardInterrupt, which click catches itself (typer < 0.17 prints
    'Aborted!' and exits 1); a BaseException, so no `except Exception` swallows it."""


def _interrupted(signum: int, frame: object) -> None:
    raise Interrupted


def _not_retracing(record: logging.LogRecord) -> bool:
    return "triggered tf.function retracing" not in record.getMessage()


#: The lines TensorFlow (2.21) writes to stderr while it is imported, before abseil has read TF_CPP_MIN_LOG_LEVEL
#: (abseil-cpp PR 1957, tensorflow PR 102212), twice each: quiet_tensorflow drops these, and only these, then.
TF_IMPORT_NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|I\d{4} [\d:.]+ +\d+ cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine, GPU will not be used\."
)


@contextmanager
def filtered_stderr(drop: re.Pattern[str]) -> Iterator[None]:
    """While inside, whatever is written to file descriptor 2 (by Python or by C/C++ code) goes through a pipe: a
    thread passes each line on to the real stderr, in order, unless `drop` matches all of it. On exit stderr is
    restored and what is left in the pipe is passed on before this returns."""
    sys.stderr.flush()
    saved = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        with os.fdopen(read_end, "rb") as src, os.fdopen(os.dup(saved), "wb", buffering=0) as dst:
            for line in src:
                if not drop.fullmatch(line.decode(errors="replace").rstrip("\r\n")):
                    dst.write(line)

    thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the thread reads to its end
        thread.join()
        os.close(saved)


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` once (then leaves sys.meta_path) and runs its import inside filtered_stderr."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        loader = spec.loader if spec is not None else None
        if loader is not None and hasattr(loader, "exec_module"):
            run = loader.exec_module

            def exec_module(module: types.ModuleType) -> None:
                with filtered_stderr(TF_IMPORT_NOISE):
                    run(module)

            loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def quiet_tensorflow() -> None:
    """Silence what TensorFlow prints that the user can do nothing about, for commands that may load it (both
    command lines: `naturalize demo` and `realism` train Keras models too): its C++ log below FATAL
    (TF_CPP_MIN_LOG_LEVEL=3 unless set; e.g. "failed call to cuInit: ... CUDA error" on a machine without a GPU),
    the lines of TF_IMPORT_NOISE that its import prints before that level is read (unless the level is 0: a user
    asking for every log line), and the "N out of the last M calls ... triggered tf.function retracing" warning
    (every model evaluated traces its own predict function, which TensorFlow counts as retracing one), by a filter
    on the standard `tensorflow` logger: no TensorFlow import, nothing under the torch backend."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.getLogger("tensorflow").addFilter(_not_retracing)
    hooked = any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path)
    if os.environ["TF_CPP_MIN_LOG_LEVEL"].strip() != "0" and "tensorflow" not in sys.modules and not hooked:
        sys.meta_path.insert(0, _QuietTensorFlowImport())


def calm_openmp() -> None:
    """Let idle OpenMP threads sleep (OMP_WAIT_POLICY=PASSIVE unless set), before any framework loads: PyTorch's
    threads otherwise spin between parallel regions, and on a shared CPU (other jobs on the cores) that made the
    torch backend 5-20x slower (DenseNet-169 transfer at 64 px, load 9 on 2 cores: 0.4 against 8.0 img/s;
    measured 2026-11-30). TensorFlow's own thread pools do not read it."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def run_app(app: typer.Typer) -> None:
    """Run `app`, turning a UserError into one `error: ...` line on stderr and exit code 2; an allocation failure
    (out_of_memory), a write that found no room (no_space) and a killed worker process (procs.WorkerDied) into one
    `error: ...` line and exit code 1; and Ctrl-C (SIGINT) into one `interrupted` line and exit code 130, with no
    traceback. Worker processes end quietly on SIGINT (naturalize.procs.die_with_parent); the command stops the rest
    of its pool as it unwinds."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not when started with SIGINT ignored
        signal.signal(signal.SIGINT, _interrupted)
    try:
        app()
    except UserError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except Interrupted:
        typer.echo("interrupted; rerun the same command to resume", err=True)
        sys.exit(130)
    except WorkerDied as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(1)
    except Exception as e:
        if (full := no_space(e)) is not None:
            typer.echo(f"error: {no_space_line(full)}", err=True)
            sys.exit(1)
        cause = out_of_memory(e)
        if cause is None:
            raise
        typer.echo(f"error: {oom_line(cause)}", err=True)
        sys.exit(1)


def no_space(e: BaseException) -> OSError | None:
    """The write that found no room in `e` or its causes: an OSError of ENOSPC (disk full), EFBIG (file size limit)
    or EDQUOT (quota), else None; also TensorFlow's own file writes (tf.io, gfile), which report one as a
    ResourceExhaustedError, "PATH; No space left on device" (given as that OSError, naming PATH). Other OSErrors are
    bugs or the user's to see with their traceback."""
    for c in error_chain(e):
        if isinstance(c, OSError) and c.errno in NO_SPACE:
            return c
        if (told := _tensorflow_no_space(c)) is not None:
            return told
    return None


#: How TensorFlow words a failed file write (tsl errors.IOError: "<file>; <strerror>"), behind its op's own prefix
#: ("{{function_node ...}} ") and before its suffix (" [Op:WriteFile]").
_TF_WRITE_ERROR = re.compile(r"(?:\{\{[^}]*\}\} )?(?P<file>.+); (?P<why>[^;\[\]]+?)(?: \[Op:\w+\])?")


def _tensorflow_no_space(e: BaseException) -> OSError | None:
    """A TensorFlow error (its ResourceExhaustedError) of a file write that found no room, as the OSError it stands
    for; else None. TensorFlow maps ENOSPC, EFBIG and EDQUOT to RESOURCE_EXHAUSTED, the code of running out of
    memory, and keeps only the system's words for them."""
    if type(e).__name__ != "ResourceExhaustedError":
        return None
    m = _TF_WRITE_ERROR.fullmatch(str(e).strip())
    code = next((c for c in NO_SPACE if m is not None and m["why"] == os.strerror(c)), None)
    return OSError(code, os.strerror(code), m["file"]) if m is not None and code is not None else None


def no_space_line(e: OSError) -> str:
    """One line for a write that found no room: the file (fsio.naming puts it on the error) and the fix. Every
    output is written atomically, so what the command wrote is whole; a rerun resumes (or redoes a short job)."""
    where = f"could not write {e.filename}" if e.filename else "could not write a file"
    return (
        f"{where}: {e.strerror or 'no room'} (a full disk, a disk quota or a file size limit); free space there (or "
        f"raise the limit), then rerun the same command (a long job resumes where it stopped)"
    )


#: What an allocation failure says, by library: Python/NumPy (MemoryError), PyTorch on CPU and CUDA, TensorFlow.
_OOM_TEXT = ("out of memory", "can't allocate memory", "oom when allocating")


def out_of_memory(e: BaseException) -> BaseException | None:
    """The allocation failure in `e` or its chain of causes (Keras re-raises backend errors), else None: a
    MemoryError, torch's OutOfMemoryError, TensorFlow's ResourceExhaustedError, or an error saying so (a CUDA
    'out of memory', PyTorch's "DefaultCPUAllocator: can't allocate memory")."""
    if no_space(e) is not None:  # TensorFlow words a full disk as ResourceExhaustedError too
        return None
    for cur in error_chain(e):
        if isinstance(cur, MemoryError) or type(cur).__name__ in ("OutOfMemoryError", "ResourceExhaustedError"):
            return cur
        if any(t in str(cur).lower() for t in _OOM_TEXT):
            return cur
    return None


def oom_line(e: BaseException) -> str:
    """One line for an allocation failure: what failed (its first line, shortened) and what to lower."""
    first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "")
    first = first if len(first) <= 160 else first[:157] + "..."
    return (
        f"out of memory ({type(e).__name__}: {first}); lower what one step holds (classify: --batch-size or "
        f"--image-size, explain: --channels; naturalize: --workers) or free memory (other jobs on this machine or "
        f"GPU), then rerun the same command"
    )


def check_seed(value: int) -> int:
    """The --seed options' callback: numpy's generators take no negative seed, so one is refused with one `error:`
    line before the command writes anything (it used to end in a traceback)."""
    if value < 0:
        raise UserError(f"--seed {value}: a seed must be 0 or more (e.g. --seed 0)")
    return value


def check_workers(value: int) -> int:
    """The --workers options' callback: fewer than one process is refused with one `error:` line (compose ran
    silently with --workers 0 or -2, where segment refused them)."""
    if value < 1:
        raise UserError(f"--workers {value}: need at least 1 process (e.g. --workers 2)")
    return value


def version_callback(prog: str) -> Callable[[bool], None]:
    """An eager --version callback printing "<prog> <version>" and exiting 0."""

    def show(value: bool) -> None:
        if value:
            typer.echo(f"{prog} {__version__}")
            raise typer.Exit()

    return show


def version_option(prog: str) -> bool:
    """The `--version` option of an app's callback."""
    return typer.Option(
        False, "--version", callback=version_callback(prog), is_eager=True, help="Print the version and exit."
    )
