"""Segmentation backends: a registry from name to a factory of `segmenter(rgb) -> Segmentation`.

    classical  weight-free (OpenCV / scikit-image), see classical.py
    sam        segment-anything from a checkpoint (torch), see sam.py
    auto       sam when a checkpoint is given or $NATURALIZE_SAM_CHECKPOINT is set, else classical

Heavy modules (torch, segment_anything) are imported only when a SAM segmenter is built.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

#: Environment variable naming a default SAM checkpoint (used by --backend auto and sam).
CHECKPOINT_ENV = "NATURALIZE_SAM_CHECKPOINT"

Segmenter = Callable[[np.ndarray], Any]  # rgb uint8 HxWx3 -> naturalize.segment.cells.Segmentation


@dataclass(frozen=True)
class Backend:
    """One backend: `build(**options)` makes a segmenter, `describe(**options)` gives the parameters
    recorded in bank.json (they decide whether a bank can be resumed); `parallel` says whether several
    worker processes may each hold one."""

    name: str
    summary: str
    build: Callable[..., Segmenter]
    describe: Callable[..., dict]
    parallel: bool


def _build_classical(**params: Any) -> Segmenter:
    from functools import partial

    from naturalize.segment.classical import ClassicalParams, segment_classical

    return partial(segment_classical, params=ClassicalParams(**params))


def _describe_classical(**params: Any) -> dict:
    from dataclasses import asdict

    from naturalize.segment.classical import ClassicalParams

    return asdict(ClassicalParams(**params))


def _build_sam(**options: Any) -> Segmenter:
    from naturalize.segment.sam import SamSegmenter

    return SamSegmenter.load(**options)


def _describe_sam(**options: Any) -> dict:
    from naturalize.segment.sam import describe

    return describe(**options)


BACKENDS: dict[str, Backend] = {
    "classical": Backend("classical", "weight-free: stain-aware thresholds and watershed (OpenCV, scikit-image)",
                         _build_classical, _describe_classical, parallel=True),
    "sam": Backend("sam", "segment-anything from a checkpoint: centre prompt for the white cell, point grid for the rest",
                   _build_sam, _describe_sam, parallel=False),
}


def resolve_backend(name: str, checkpoint: str | None) -> tuple[str, str | None, str]:
    """(backend, checkpoint, why) for --backend NAME: `auto` picks sam when a checkpoint is given or
    $NATURALIZE_SAM_CHECKPOINT is set, else classical. Raises ValueError for an unknown name."""
    checkpoint = checkpoint or os.environ.get(CHECKPOINT_ENV) or None
    if name == "auto":
        if checkpoint:
            return "sam", checkpoint, f"backend auto -> sam (checkpoint {checkpoint})"
        return "classical", None, f"backend auto -> classical (no --checkpoint and ${CHECKPOINT_ENV} unset)"
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; use auto, {', '.join(BACKENDS)}")
    return name, checkpoint if name == "sam" else None, f"backend {name}"


def make_segmenter(name: str, **options: Any) -> Segmenter:
    """Build the segmenter of backend `name` (options as accepted by that backend)."""
    return BACKENDS[name].build(**options)
