"""Helpers for tests and benchmarks (not used by the commands): small sprite banks made without SAM.

boxbank    a bank cut from real PBC images with their OI-PBC boxes (needs the PBC sample)
drawnbank  a bank of procedurally drawn cells (naturalize.drawn), written by the product's BankWriter
cli        run_cli: `python -m naturalize.cli` / `classify.cli` in a subprocess, as a user runs it
oracles    the compose run files as plain dicts (what annotate's template writers must reproduce)
race       the same claim started in several processes at one instant
crash      a tiny command whose pool workers die (SIGKILL, out of memory, an import error at start-up)
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from naturalize.paths import env_path

#: The shared PBC sample (release layout + OI-PBC boxes) that real-data tests and benchmarks read.
SAMPLE_ENV = "NATURALIZE_SAMPLE"


def sample_home() -> Path:
    """$NATURALIZE_SAMPLE, else shared/pbc-sample beside the repository (an empty variable counts as unset)."""
    return env_path(SAMPLE_ENV, Path(__file__).resolve().parents[2].parent / "shared" / "pbc-sample")


def machine() -> str:
    """What a benchmark ran on, for its record: '2-core Intel(R) Xeon(R) Processor (x86_64)' (the CPU model from
    /proc/cpuinfo where there is one: a cloud machine of the same name may sit on another CPU from day to day)."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return f"{os.cpu_count()}-core {model} ({platform.machine()})"


def as_from_a_terminal() -> None:
    """`preexec_fn` of a subprocess a test interrupts with Ctrl-C: SIGINT at its default, as a terminal's shell
    starts a command. A background job of a non-interactive shell (`pytest ... &`, some CI runners) inherits SIGINT
    ignored, and Python then never raises KeyboardInterrupt: the command would run on to exit 0."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
