"""Composition: realistic synthetic PBC images from a sprite bank (`naturalize compose`, `preview`).

params.py     ComposeParams and the parsing of sizes, ranges and shards
library.py    the bank loaded for one run: feathered premultiplied sprites, plates, colour statistics
stain.py      stain matching: von Kries gains from plasma colours
transform.py  flips, quarter turns, small rotations and scale jitter (one affine warp)
variety.py    white-cell variety: --wbc-scale, --wbc-stain, --wbc-warp, --wbc-focus
core.py       the pure core: layout, recolouring and blending of one image (arrays + Generator)
scenes.py     scenes (paper, matched, transplant): their libraries, transplant donors and their cache
scene_stats.py  the class's scene statistics measured on the bank's images (matched)
source_cache.py  matched: plates and red-cell variants made once per bank (seed-independent), memory-mapped
annotate.py   per-image records, manifest lines and the COCO file
dupes.py      byte-identical composites of a run (journal keys, the warning)
run.py        the shell: forked workers over one library, journals, shards, resume, output files
preview.py    contact sheets, real beside synthetic
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the module that defines it; imported on first use, so `import naturalize.compose.params`
#: (the CLI reads its defaults) does not load OpenCV, pycocotools and the run shell.
_EXPORTS = {
    "Composite": "core",
    "compose_image": "core",
    "Library": "library",
    "load_library": "library",
    "ComposeParams": "params",
    "compose_class": "run",
    "render": "run",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'naturalize.compose' has no attribute {name!r}")
    return getattr(importlib.import_module(f"naturalize.compose.{_EXPORTS[name]}"), name)
