"""Composition: realistic synthetic PBC images from a sprite bank (`naturalize compose`, `preview`).

    params.py     ComposeParams and the parsing of sizes, ranges and shards
    library.py    the bank loaded for one run: feathered premultiplied sprites, plates, colour statistics
    stain.py      stain matching: von Kries gains from plasma colours
    transform.py  flips, quarter turns, small rotations and scale jitter (one affine warp)
    core.py       the pure core: layout, recolouring and blending of one image (arrays + Generator)
    scenes.py     scenes (paper, matched, transplant): their libraries, transplant donors and their cache
    scene_stats.py  the class's scene statistics measured on the bank's images (matched)
    annotate.py   per-image records, manifest lines and the COCO file
    run.py        the shell: forked workers over one library, journals, shards, resume, output files
    preview.py    contact sheets, real beside synthetic
"""

from naturalize.compose.core import Composite, compose_image
from naturalize.compose.library import Library, load_library
from naturalize.compose.params import ComposeParams
from naturalize.compose.run import compose_class, render

__all__ = ["ComposeParams", "Composite", "Library", "compose_class", "compose_image", "load_library", "render"]
