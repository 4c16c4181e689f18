"""TensorFlow's C++ start-up lines kept off stderr: what every `classify` command, `naturalize realism` and
`naturalize demo` install before TensorFlow can be imported (quiet_tensorflow).

TF_CPP_MIN_LOG_LEVEL (set to 3 unless the user set it: only FATAL) hides TensorFlow's own C++ log, but the libraries
`import tensorflow` loads log through absl before that level is read ("WARNING: All log messages before
absl::InitializeLog() is called are written to STDERR", "I0000 ... cudart_stub.cc:31] Could not find cuda drivers on
your machine, GPU will not be used."). So while `import tensorflow` runs, file descriptor 2 goes to a temporary file;
afterwards everything goes back to stderr except the C++ log lines below that same level (and their continuation
lines). With TF_CPP_MIN_LOG_LEVEL=0 every line shows.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.machinery import ModuleSpec
from types import ModuleType

from naturalize.fsio import write_all

ENV = "TF_CPP_MIN_LOG_LEVEL"
#: The level set when the user set none: 2 would still show "E ... failed call to cuInit" on every run of a machine
#: without a GPU (TensorFlow's Linux wheel carries CUDA); an error that matters is raised as a Python exception.
DEFAULT_LEVEL = "3"
SEVERITIES = "IWEF"  # INFO, WARNING, ERROR, FATAL: TF_CPP_MIN_LOG_LEVEL 0..3 hides those below it
ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
#: a C++ log line, absl's format (`I0000 00:00:17.96 5238 file.cc:31] `) or TensorFlow's older one
#: (`2024-01-01 12:00:00.123: I tensorflow/core/util/port.cc:113] `)
_LOG_LINE = re.compile(r"(?:(?P<a>[IWEF])\d{4} [\d:.]+\s+\d+|\d{4}-\d\d-\d\d [\d:.]+: (?P<b>[IWEF])) \S+:\d+\] ")
#: a line that cannot continue a C++ log record: a Python warning or traceback, or a line of this project's own
_NOT_CONTINUED = re.compile(r"\S.*:\d+: \w*Warning: |Traceback |(error|warning): ")


def level() -> int:
    """TF_CPP_MIN_LOG_LEVEL as TensorFlow reads it (0 when unset or not a number)."""
    try:
        return int(os.environ.get(ENV, "0"))
    except ValueError:
        return 0


def drop_log_lines(text: str, min_level: int) -> str:
    """`text` (what went to stderr) less the C++ log lines of a severity below `min_level` (0 INFO .. 3 FATAL), the
    lines that continue them, and absl's preamble line when INFO is hidden; everything else as it was."""
    kept: list[str] = []
    dropping = False
    for line in text.splitlines(keepends=True):
        m = _LOG_LINE.match(line)
        if m:
            dropping = SEVERITIES.index(m["a"] or m["b"]) < min_level
        elif line.rstrip("\r\n") == ABSL_PREAMBLE:
            dropping = min_level > 0
        elif _NOT_CONTINUED.match(line):
            dropping = False
        if not dropping:
            kept.append(line)
    return "".join(kept)


@contextmanager
def filtered_stderr(min_level: int) -> Iterator[None]:
    """Within: file descriptor 2 (C++ and Python alike) goes to a temporary file; on leaving, its text less
    drop_log_lines(min_level) is written to stderr, also when the body raised."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = drop_log_lines(tmp.read().decode("utf-8", "surrogateescape"), min_level)
            if text:
                write_all(2, text.encode("utf-8", "surrogateescape"))


class _QuietLoader(importlib.abc.Loader):
    """tensorflow's own loader, its module executed within filtered_stderr."""

    def __init__(self, loader: importlib.abc.Loader, min_level: int) -> None:
        self.loader = loader
        self.min_level = min_level

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self.loader  # the module keeps its own loader (resources, reloads)
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        with filtered_stderr(self.min_level):
            self.loader.exec_module(module)


class _QuietImport(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` (once, then leaves sys.meta_path) as the other finders do, with a _QuietLoader."""

    def __init__(self, min_level: int) -> None:
        self.min_level = min_level

    def find_spec(self, name: str, path: object = None, target: ModuleType | None = None) -> ModuleSpec | None:
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader, self.min_level)
        return spec


def quiet_tensorflow() -> None:
    """Set TF_CPP_MIN_LOG_LEVEL to DEFAULT_LEVEL unless the user set it, and have the first `import tensorflow` of
    this process (by Keras or anyone) drop the C++ log lines below that level that it prints (module doc).
    Nothing to do once TensorFlow is imported; harmless under the torch backend (nothing imports it)."""
    os.environ.setdefault(ENV, DEFAULT_LEVEL)
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietImport) for f in sys.meta_path):
        return
    if level() > 0:
        sys.meta_path.insert(0, _QuietImport(level()))
