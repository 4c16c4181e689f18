"""Worker processes that end with their parent, so a killed command leaves no orphan printing tracebacks, and
leave Ctrl-C to it, so an interrupted command prints no traceback per worker."""

from __future__ import annotations

import signal
import sys


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
