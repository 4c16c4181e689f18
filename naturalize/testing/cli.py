"""Run a command line as a user does (a subprocess), for tests and benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping


def run_cli(
    tool: str,
    *args: object,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """`python -m <tool>.cli ARGS` (naturalize or classify; each arg as str) with `env` over this process's
    environment; returns the finished process with stdout and stderr as text. Never raises on a failing exit."""
    return subprocess.run(
        [sys.executable, "-m", f"{tool}.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=timeout,
    )
