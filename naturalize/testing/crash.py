"""A tiny command whose pool workers die as real workers die, for tests of what the user then reads: killed by
SIGKILL (the kernel's out-of-memory killer), out of memory with none left to send the error back (their address
space capped with RLIMIT_AS), or failing at start-up (an import error). `python -m naturalize.testing.crash HOW`."""

from __future__ import annotations

import os
import resource
import signal

import typer

from naturalize.clihelp import run_app
from naturalize.procs import die_with_parent, pool_context, started, watched

app = typer.Typer(add_completion=False)
#: What a worker holds once it has run out of memory (so that it has none left to report its error with).
_HELD: list[bytes] = []


def _fill_memory() -> None:
    """Cap this process's address space near its size, then take all of it: a MemoryError with nothing left."""
    with open("/proc/self/status", encoding="ascii") as f:
        size = int(next(ln for ln in f if ln.startswith("VmSize")).split()[1]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (size + (64 << 20), resource.RLIM_INFINITY))
    chunk = 1 << 20
    while chunk >= 16:
        try:
            _HELD.append(bytes(chunk))
        except MemoryError:
            chunk //= 2


def _task(job: tuple[str, int]) -> int:
    """In a worker: item `i` of a run that dies as `how` says at item 3."""
    how, i = job
    if i == 3:
        if how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif how == "memory":
            _fill_memory()
            return len(_HELD)
    return i


def _init(how: str) -> None:
    """A worker's initializer: die_with_parent, then fail as `how` says (an import error at start-up)."""
    die_with_parent()
    if how == "import":
        import naturalize_no_such_module  # type: ignore[import-not-found]  # noqa: F401


@app.command()
def main(how: str, workers: int = 2) -> None:
    """Run 8 items on a pool of `workers` processes that die as HOW says: kill, memory or import."""
    pool, procs = started(lambda: pool_context().Pool(workers, _init, (how,)))
    with pool:
        for x in watched(pool, procs, _task, [(how, i) for i in range(8)]):
            print(x)


if __name__ == "__main__":
    run_app(app)
