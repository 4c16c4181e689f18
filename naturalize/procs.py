"""Worker processes that end with their parent, so a killed command leaves no orphan printing tracebacks, and
leave Ctrl-C to it, so an interrupted command prints no traceback per worker (`die_with_parent`); a parent that
stops with one line when one of its workers is killed, instead of waiting for its results forever (`started`,
`watched`, `waited`, `WorkerDied`)."""

from __future__ import annotations

import multiprocessing as mp
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.pool import AsyncResult, Pool
from multiprocessing.process import BaseProcess
from typing import TypeVar

A = TypeVar("A")
T = TypeVar("T")
P = TypeVar("P")


def die_with_parent() -> None:
    """In a worker: ask Linux to send SIGTERM when the parent process dies (prctl PR_SET_PDEATHSIG), let
    SIGTERM and a broken pipe end the worker quietly, and ignore SIGINT: Ctrl-C reaches every process of the
    terminal's group, and the parent reports it (clihelp.run_app) and terminates its pool. For a
    multiprocessing Pool (daemonic workers, terminated even when the parent is interrupted while starting it),
    not a ProcessPoolExecutor (its workers are waited for at exit)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


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
    """WorkerDied naming the first process of `workers` that has ended, how, and the fix."""
    for p in workers:
        code = p.exitcode
        if code is None:
            continue
        if code == -signal.SIGKILL:
            how = "was killed (SIGKILL: the kernel's out-of-memory killer, see `dmesg`, or a kill -9)"
        elif code < 0:
            how = f"was killed by {signal.Signals(-code).name}"
        else:
            how = f"ended with exit code {code} (its own error, if any, is printed above)"
        raise WorkerDied(
            f"worker process {p.pid} {how}; lower --workers or free memory (other jobs on this machine), then rerun "
            f"the same command: it resumes"
        )
