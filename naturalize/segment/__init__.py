"""Segmentation backends: a registry from name to a `Backend` (like SAM's sam_model_registry).

Each backend owns its options: `options(values)` turns the command's generic values (checkpoint,
model_type, device, points_per_side, params, sam_settings) into its validated keyword options (UserError
naming the fix; a backend refuses values it does not use rather than ignore them), `build(**options)`
makes a `segmenter(rgb) -> Segmentation`, `describe(**options)` gives every setting and threshold a bank
made with it depends on (bank.json; a bank resumes only when they match),
and `auto(values)` says whether `--backend auto` picks it (the registry's order is auto's order).

A new backend is one module with its segmenter plus one entry in BACKENDS here: run.py and the CLI
read everything else from the registry. Heavy modules (torch, segment_anything) are imported only when
a SAM segmenter is built.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from naturalize.fsio import UserError

#: Environment variable naming a default SAM checkpoint (used by --backend auto and sam).
CHECKPOINT_ENV = "NATURALIZE_SAM_CHECKPOINT"

#: (rgb uint8 HxWx3, label=the image's class or "") -> naturalize.segment.cells.Segmentation; the label is a hint
#: (the classical backend's white-cell refinement reads it; SAM ignores it)
Segmenter = Callable[..., Any]
#: the command's values: checkpoint, model_type, device, points_per_side (--points), params (the backend's fields,
#: from Python), sam_settings (--sam-set NAME=VALUE, SamParams fields)
Values = Mapping[str, Any]


@dataclass(frozen=True)
class Backend:
    """One backend (see the module doc); `parallel`: several worker processes may each hold one;
    `uses_device`: it honours --device (else --device is noted as ignored)."""

    name: str
    options: Callable[[Values], dict]
    build: Callable[..., Segmenter]
    describe: Callable[..., dict]
    auto: Callable[[Values], str | None]  # why auto picks it, or None
    auto_help: str  # when auto picks it, for the --backend help
    parallel: bool
    uses_device: bool = False


def plain(settings: dict) -> dict:
    """`settings` as bank.json stores it (tuples become lists), so a recorded identity compares equal."""
    return json.loads(json.dumps(settings))


def shared_rules() -> dict:
    """Thresholds every backend's sprites pass through (usable-cell rules and the quality gate)."""
    from naturalize.segment.assign import UsableRules
    from naturalize.segment.gate import GateRules
    from naturalize.segment.outline import WEIGHTS, weights_id

    return {"usable": asdict(UsableRules()), "gate": asdict(GateRules()), "rbc_outline_model": weights_id(WEIGHTS)}


# ---------------------------------------------------------------- classical


def _classical_options(values: Values) -> dict:
    from naturalize.segment.classical import ClassicalParams

    sam_only = ["--points"] if values.get("points_per_side") is not None else []
    sam_only += ["--sam-set"] if values.get("sam_settings") else []
    if sam_only:
        raise UserError(
            f"{' and '.join(sam_only)} {'are SAM settings' if len(sam_only) > 1 else 'is a SAM setting'}, but the "
            f"backend is classical (auto picks sam "
            f"only with --checkpoint or ${CHECKPOINT_ENV}); drop {' and '.join(sam_only)}, or pass --backend sam "
            f"--checkpoint PATH"
        )
    params = dict(values.get("params") or {})
    unknown = sorted(set(params) - set(ClassicalParams.__dataclass_fields__))
    if unknown:
        raise UserError(
            f"classical backend has no parameter {', '.join(unknown)}; see naturalize.segment.classical.ClassicalParams"
        )
    return params


def _build_classical(**params: Any) -> Segmenter:
    from functools import partial

    from naturalize.segment.classical import ClassicalParams, segment_classical

    return partial(segment_classical, params=ClassicalParams(**params))


def _describe_classical(**params: Any) -> dict:
    from naturalize.segment.classical import ClassicalParams
    from naturalize.segment.outline import weights_id
    from naturalize.segment.refine import WEIGHTS

    p = ClassicalParams(**params)
    refine = weights_id(WEIGHTS) if p.wbc_refine else None
    return plain({**asdict(p), "wbc_refine_model": refine, **shared_rules()})


# ---------------------------------------------------------------- sam


def _sam_checkpoint(values: Values) -> str | None:
    return values.get("checkpoint") or os.environ.get(CHECKPOINT_ENV) or None


def _sam_options(values: Values) -> dict:
    from naturalize.segment.sam import MODEL_TYPES, SamParams, check_settings  # (no torch import: checks first)

    model_type = values.get("model_type") or "vit_b"
    if model_type not in MODEL_TYPES:
        raise UserError(f"unknown --model-type {model_type!r}; use one of {', '.join(MODEL_TYPES)}")
    params = dict(values.get("params") or {})
    unknown = sorted(set(params) - set(SamParams.__dataclass_fields__))
    if unknown:
        raise UserError(
            f"sam backend has no parameter {', '.join(unknown)}; use the fields of naturalize.segment.sam.SamParams "
            f"({', '.join(SamParams.__dataclass_fields__)})"
        )
    params = check_settings(params, "backend_params")
    settings = check_settings(values.get("sam_settings") or {})
    points = values.get("points_per_side")
    if points is not None:
        if "points_per_side" in settings and settings["points_per_side"] != points:
            raise UserError(
                f"--points {points} and --sam-set points_per_side={settings['points_per_side']} disagree; give one"
            )
        settings["points_per_side"] = check_settings({"points_per_side": points}, "--points")["points_per_side"]
    checkpoint = _sam_checkpoint(values)
    if not checkpoint:
        raise UserError(
            f"--backend sam needs a checkpoint: pass --checkpoint PATH or set ${CHECKPOINT_ENV} "
            f"(download one with `naturalize fetch-sam {model_type}`)"
        )
    if Path(checkpoint).is_dir():
        found = sorted(p.name for p in Path(checkpoint).glob("*.pth"))
        inside = f" (it holds {', '.join(found[:3])})" if found else ""
        raise UserError(
            f"SAM checkpoint {checkpoint} is a directory{inside}; pass the checkpoint file itself to --checkpoint"
        )
    if not Path(checkpoint).is_file():  # checked here, so the error comes before torch is imported
        raise UserError(
            f"SAM checkpoint {checkpoint} not found; download one with `naturalize fetch-sam {model_type}` "
            f"and pass its path to --checkpoint"
        )
    opts: dict = {
        "checkpoint": str(checkpoint),
        "model_type": model_type,
        "device": values.get("device") or "auto",
        **params,
        **settings,
    }
    return opts


def _build_sam(**options: Any) -> Segmenter:
    from naturalize.segment.sam import SamSegmenter

    return SamSegmenter.load(**options)


def _describe_sam(**options: Any) -> dict:
    from naturalize.segment.assign import MaskRules
    from naturalize.segment.sam import describe

    return plain({**describe(**options), "kinds": asdict(MaskRules()), **shared_rules()})


def _sam_auto(values: Values) -> str | None:
    checkpoint = _sam_checkpoint(values)
    return f"checkpoint {checkpoint}" if checkpoint else None


BACKENDS: dict[str, Backend] = {  # in the order --backend auto tries them
    # segment-anything from a checkpoint: centre prompt for the white cell, point grid for the rest
    "sam": Backend(
        "sam",
        _sam_options,
        _build_sam,
        _describe_sam,
        _sam_auto,
        f"when --checkpoint or ${CHECKPOINT_ENV} names a checkpoint",
        parallel=False,
        uses_device=True,
    ),
    # weight-free: stain-aware thresholds and watershed (OpenCV, scikit-image)
    "classical": Backend(
        "classical",
        _classical_options,
        _build_classical,
        _describe_classical,
        lambda values: "weight-free fallback",
        "otherwise",
        parallel=True,
    ),
}


def backend_help() -> str:
    """The --backend help line, generated from the registry."""
    picks = ", ".join(f"{b.name} {b.auto_help}" for b in BACKENDS.values())
    return f"auto | {' | '.join(BACKENDS)}. auto picks {picks}."


def resolve_backend(name: str, values: Values) -> tuple[str, dict, str]:
    """(backend, its validated options, what was chosen and why) for --backend NAME; UserError for an
    unknown name or bad options."""
    if name == "auto":
        for spec in BACKENDS.values():
            why = spec.auto(values)
            if why:
                return spec.name, spec.options(values), f"backend auto -> {spec.name} ({why})"
        raise UserError("--backend auto found no backend to use")  # unreachable: classical always answers
    if name not in BACKENDS:
        raise UserError(f"--backend: unknown backend {name!r}; use auto, {', '.join(BACKENDS)}")
    return name, BACKENDS[name].options(values), f"backend {name}"


def make_segmenter(name: str, **options: Any) -> Segmenter:
    """Build the segmenter of backend `name` (options as accepted by that backend)."""
    return BACKENDS[name].build(**options)
