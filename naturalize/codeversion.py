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
    """sha256 over the names and source bytes of the given modules (e.g. "naturalize.compose.library")."""
    h = hashlib.sha256()
    for name in modules:
        path = Path(importlib.import_module(name).__file__ or name)
        h.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()
