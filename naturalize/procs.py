"""Worker processes that end with their parent, so a killed command leaves no orphan printing tracebacks."""

from __future__ import annotations

import signal
import sys


def die_with_parent() -> None:
    """In a worker: ask Linux to send SIGTERM when the parent process dies (prctl PR_SET_PDEATHSIG), and let
    SIGTERM and a broken pipe end the worker quietly. Elsewhere a no-op."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
