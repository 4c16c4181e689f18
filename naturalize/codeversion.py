"""What version of the code made a cached artefact: a digest of the source files that shape it.

A cache made by other code (any edit of those files, not only a bumped version number) gets another stamp and
is made again. In: module names. Out: a hex digest.
"""

from __future__ import annotations

import hashlib
import importlib
from functools import cache
from pathlib import Path


@cache
def code_digest(*modules: str) -> str:
    """sha256 over the names and source bytes of the given modules (e.g. "naturalize.compose.library"); a package
    (e.g. "naturalize.bank") counts every .py file in its folder, so an edit of any of its modules changes it."""
    h = hashlib.sha256()
    for name in modules:
        module = importlib.import_module(name)
        path = Path(module.__file__ or name)
        files = sorted(path.parent.rglob("*.py")) if hasattr(module, "__path__") else [path]
        for file in files:
            label = name if file == path else f"{name}/{file.relative_to(path.parent).as_posix()}"
            h.update(label.encode() + b"\0" + file.read_bytes() + b"\0")
    return h.hexdigest()
