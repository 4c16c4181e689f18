"""Worker processes that end with their parent, so a killed command leaves no orphan printing tracebacks, and
leave Ctrl-C to it, so an interrupted command prints no traceback per worker (`die_with_parent`); a parent that
stops with one line when one of its workers is killed, instead of waiting for its results forever (`started`,
`watched`, `waited`, `WorkerDied`); a worker that dies of an error prints no traceback of multiprocessing's above that
line, but tells by its exit code whether it ran out of memory (`pool_context`, `OUT_OF_MEMORY_EXIT`, `DEBUG_ENV`)."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.context import (
    BaseContext,
    ForkContext,
    ForkProcess,
    ForkServerContext,
    ForkServerProcess,
    SpawnContext,
    SpawnProcess,
)
from multiprocessing.pool import AsyncResult, Pool
from multiprocessing.process import BaseProcess
from typing import TypeVar

A = TypeVar("A")
T = TypeVar("T")
P = TypeVar("P")

#: The exit code of a worker that died of a MemoryError (one that left it no memory to send its error back with):
#: 75, EX_TEMPFAIL of sysexits.h, "a temporary failure": free memory and rerun. Any other error that ends a worker
#: ends it with exit code 1, as multiprocessing does.
OUT_OF_MEMORY_EXIT = 75
#: Set to anything but "" or "0" to let a dying worker print its traceback (multiprocessing's "Process
#: ForkPoolWorker-N:" block) above the command's one line, as a developer wants when a worker crashes.
DEBUG_ENV = "NATURALIZE_DEBUG"


def die_with_parent() -> None:
    """In a worker: end it quietly (SIGTERM) when the parent process dies, let SIGTERM and a broken pipe end the
    worker quietly, ignore SIGINT (Ctrl-C reaches every process of the terminal's group, and the parent reports it,
    clihelp.run_app, and terminates its pool). For a
    multiprocessing Pool (daemonic workers, terminated even when the parent is interrupted while starting it),
    not a ProcessPoolExecutor (its workers are waited for at exit).

    Linux tells of the parent's death by prctl PR_SET_PDEATHSIG, but it sends the signal when the *thread* that
    started the worker ends: a Pool starts the workers that replace dead ones from a thread of its own, which ends
    when the pool is terminated, so a replacement worker got SIGTERM then, at any point, even while it held the
    pool's task-queue lock, and Pool.terminate waited for that lock forever (1 run in 15 of a pool whose worker was
    killed hung). The signal is now SIGHUP, and the worker ends only if its parent process is really gone."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    started_by = mp.parent_process()
    parent = started_by.pid if started_by is not None and started_by.pid is not None else os.getppid()

    def parent_gone(signum: int, frame: object) -> None:
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGHUP, parent_gone)
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGHUP, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # it died before prctl
        os.kill(os.getpid(), signal.SIGTERM)


def debugging() -> bool:
    """Whether $NATURALIZE_DEBUG asks for a dying worker's traceback (set, and neither "" nor "0")."""
    return os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")


def _run_quietly(run: Callable[[], None]) -> None:
    """A worker process's run(), with a little memory held back: an error that escapes it (one that escapes a
    Pool's worker loop: a MemoryError while it sends a result or an error back, any error in its initializer, a
    task it cannot unpickle) ends the process at once with exit code OUT_OF_MEMORY_EXIT for a MemoryError (in the
    error or its chain), else 1, instead of letting multiprocessing print its traceback on the command's stderr:
    the parent (`watched`, `waited`) tells the user in one line, from that exit code. With $NATURALIZE_DEBUG set
    the traceback is printed first."""
    reserve = bytearray(256 << 10)  # freed as it dies, so that telling how it died does not itself fail
    try:
        run()
    except BaseException as err:
        reserve.clear()
        code = OUT_OF_MEMORY_EXIT if any(isinstance(e, MemoryError) for e in error_chain(err)) else 1
        try:
            if debugging():
                import traceback

                traceback.print_exc()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


class _Quiet(BaseProcess):
    """A worker process that dies of an error without a traceback (`_run_quietly`); mixed into each start method's
    Process class below (module level: spawn and forkserver pickle the process object by its class)."""

    def run(self) -> None:
        _run_quietly(super().run)


class QuietForkProcess(_Quiet, ForkProcess):
    pass


class QuietSpawnProcess(_Quiet, SpawnProcess):
    pass


class QuietForkServerProcess(_Quiet, ForkServerProcess):
    pass


class _QuietFork(ForkContext):
    Process = QuietForkProcess


class _QuietSpawn(SpawnContext):
    Process = QuietSpawnProcess


class _QuietForkServer(ForkServerContext):
    Process = QuietForkServerProcess


_QUIET: dict[str, type[BaseContext]] = {"fork": _QuietFork, "spawn": _QuietSpawn, "forkserver": _QuietForkServer}


def pool_context(method: str | None = None) -> BaseContext:
    """multiprocessing.get_context(method) (the default start method when None) whose processes die of an error
    quietly (`_run_quietly`): make every worker Pool with it, `pool_context().Pool(...)`."""
    return _QUIET[method or mp.get_start_method()]()


def error_chain(e: BaseException) -> Iterator[BaseException]:
    """`e` and its chain of causes, each once: the errors it was raised from or while handling (Keras and
    multiprocessing re-raise errors)."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


class WorkerDied(Exception):
    """A worker process of a pool ended while the command waited for its results: killed (the kernel's
    out-of-memory killer sends SIGKILL; kill -9) or crashed. A multiprocessing Pool would replace it and wait for
    its lost results forever; `watched` raises this instead, and clihelp.run_app prints it as one line."""


def started(make: Callable[[], P]) -> tuple[P, list[BaseProcess]]:
    """make() (it starts a multiprocessing Pool, whose workers start at once) and the worker processes it started:
    the live children that were not there before."""
    before = set(mp.active_children())
    pool = make()
    return pool, [p for p in mp.active_children() if p not in before]


def watched(
    pool: Pool,
    workers: list[BaseProcess],
    func: Callable[[A], T],
    items: Sequence[A],
    chunksize: int = 1,
    ordered: bool = True,
    poll: float = 1.0,
) -> Iterator[T]:
    """pool.imap (imap_unordered unless `ordered`) of `func` over `items` in chunks of `chunksize`, checking after
    each chunk, and every `poll` seconds while none comes, that every process of `workers` (`started`) still runs:
    WorkerDied when one has ended. The chunks are made here, as the Pool makes them, because a Pool's iterator over
    chunks has no timeout."""
    chunks = [(func, items[i : i + chunksize]) for i in range(0, len(items), max(1, chunksize))]
    results = (pool.imap if ordered else pool.imap_unordered)(_map_chunk, chunks)
    while True:
        try:
            done = results.next(timeout=poll)
        except StopIteration:
            return
        except mp.TimeoutError:
            _check_alive(workers)
            continue
        _check_alive(workers)
        yield from done


def waited(result: AsyncResult[T], workers: list[BaseProcess], poll: float = 1.0) -> T:
    """result.get() (a Pool's apply_async), checking every `poll` seconds while it is not ready that every process
    of `workers` still runs: WorkerDied when one has ended (the Pool would wait for its result forever)."""
    while True:
        try:
            return result.get(timeout=poll)
        except mp.TimeoutError:
            _check_alive(workers)


def _map_chunk(job: tuple[Callable[[A], T], Sequence[A]]) -> list[T]:
    """In a worker: func over one chunk of items."""
    func, chunk = job
    return [func(x) for x in chunk]


def _check_alive(workers: list[BaseProcess]) -> None:
    """WorkerDied naming the first process of `workers` that has ended, how (`died_how`), and the fix."""
    for p in workers:
        if p.exitcode is not None:
            raise WorkerDied(f"worker process {p.pid} {died_how(p.exitcode)}")


#: What to do when a worker died for want of memory.
MEMORY_FIX = "lower --workers or free memory (other jobs on this machine), then rerun the same command: it resumes"
#: What to do when a worker crashed.
CRASH_FIX = (
    f"this is an error, not a lack of memory: rerun the same command with --workers 1 to see it (or set "
    f"{DEBUG_ENV}=1 to let the workers print it)"
)
#: The signals of a process that crashed (a fault in native code), as against one killed from outside.
_CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT}


def died_how(code: int) -> str:
    """How a worker process that ended with exit code `code` (Process.exitcode: -N for signal N) died, and the fix:
    for want of memory (SIGKILL, which the kernel's out-of-memory killer sends; OUT_OF_MEMORY_EXIT, a MemoryError)
    lower --workers or free memory; a crash (another exit code, a fault signal) is shown with --workers 1; killed
    by another signal (SIGTERM, from outside), rerun."""
    if code == -signal.SIGKILL:
        return f"was killed (SIGKILL: the kernel's out-of-memory killer, see `dmesg`, or a kill -9); {MEMORY_FIX}"
    if code == OUT_OF_MEMORY_EXIT:
        return f"ran out of memory (a MemoryError, with no memory left to report it; exit code {code}); {MEMORY_FIX}"
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
        if -code in _CRASH_SIGNALS:
            return f"crashed ({name}, exit code {code}); {CRASH_FIX}"
        return f"was stopped by {name} (from outside this command); rerun the same command: it resumes"
    return f"crashed with exit code {code}; {CRASH_FIX}"
