"""The segment-anything backend: one image encoding, batched point prompts, masks -> cells.

In: an RGB image (HxWx3 uint8). Out: a `Segmentation`. Steps: (1) encode the image once;
(2) a centre point prompt for the white cell (every PBC crop is centred on one); (3) a regular
grid of point prompts, run in batches, for the red cells and platelets; (4) drop low-quality masks
(predicted IoU, stability under threshold shifts), tiny and plate-sized ones and duplicates (box NMS, the
centre mask first), counting each drop by reason (`MaskCounts`; bank.json sums them in counts.masks);
(5) `cells_from_masks` gives each mask a kind by colour, size and shape, `finish` inpaints the
background and sets the curation flags.

Loading checks the checkpoint before use: missing or unreadable files, weights of another model
type, and --device cuda without CUDA each raise one UserError line naming the fix.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from naturalize.fsio import UserError

MODEL_TYPES: tuple[str, ...] = ("vit_b", "vit_l", "vit_h")
#: Width of the image encoder's patch embedding -> model type (how a checkpoint tells its type).
EMBED_DIM_TO_TYPE: dict[int, str] = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}


def _setting(default: float, low: float, high: float) -> Any:
    """A SamParams field with the range a value must lie in (closed; checked by `check_settings`)."""
    return field(default=default, metadata={"range": (low, high)})


@dataclass(frozen=True)
class SamParams:
    """Prompting and filtering settings (recorded in bank.json; `--sam-set NAME=VALUE` sets them, within the
    range each field names)."""

    points_per_side: int = _setting(16, 1, 128)  # grid of points_per_side**2 prompts for red cells and platelets
    points_per_batch: int = _setting(64, 1, 4096)  # prompts decoded together
    pred_iou_thresh: float = _setting(0.86, 0.0, 1.0)  # keep masks whose predicted IoU is at least this
    stability_thresh: float = _setting(0.90, 0.0, 1.0)  # keep masks whose stability score is at least this
    box_nms_thresh: float = _setting(0.7, 0.0, 1.0)  # duplicate masks: box IoU above this
    min_area: int = _setting(12, 0, 100_000)  # masks smaller than this many pixels are noise
    max_area_frac: float = _setting(0.5, 0.0, 1.0)  # masks covering more of the image are the plate, not a cell


def settings_help() -> str:
    """Every SamParams field with its type, range and default: 'points_per_side (int 1..128, default 16), ...'."""
    out = []
    for f in fields(SamParams):
        low, high = f.metadata["range"]
        kind = "int" if f.type in (int, "int") else "float"
        out.append(f"{f.name} ({kind} {low}..{high}, default {f.default})")
    return ", ".join(out)


def check_settings(settings: Mapping[str, Any], option: str = "--sam-set") -> dict[str, int | float]:
    """SamParams overrides (name -> value: a number, or its text as given on the command line) -> the same with
    values of the field's type; one UserError line naming the bad name or value and every valid name with its
    type and range."""
    by_name = {f.name: f for f in fields(SamParams)}
    out: dict[str, int | float] = {}
    for name, value in settings.items():
        f = by_name.get(name)
        if f is None:
            raise UserError(f"{option}: SAM has no setting {name!r}; use NAME=VALUE with one of: {settings_help()}")
        is_int = f.type in (int, "int")
        low, high = f.metadata["range"]
        try:
            if isinstance(value, bool) or (is_int and isinstance(value, float) and not value.is_integer()):
                raise ValueError
            number: int | float = int(value) if is_int else float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if not low <= number <= high:  # also NaN: an unreadable value or "nan"
            kind = "a whole number" if is_int else "a number"
            raise UserError(
                f"{option}: {name}={value} is not {kind} in {low}..{high}; valid settings: {settings_help()}"
            )
        out[name] = number
    return out


def parse_settings(items: Sequence[str], option: str = "--sam-set") -> dict[str, int | float]:
    """Repeated `NAME=VALUE` texts -> checked SamParams overrides (`check_settings`); a name given twice or an item
    without '=' is one UserError line."""
    settings: dict[str, str] = {}
    for item in items:
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq or not name:
            raise UserError(f"{option} {item!r} is not NAME=VALUE (e.g. {option} pred_iou_thresh=0.8)")
        if name in settings:
            raise UserError(f"{option}: {name} is given twice ({name}={settings[name]} and {item}); give it once")
        settings[name] = value.strip()
    return check_settings(settings, option)


#: Why SAM drops a candidate mask before the quality gate, in the order its filters are tried (a mask is counted
#: under the first it fails): predicted IoU under pred_iou_thresh, stability under stability_thresh, fewer than
#: min_area pixels (at the decoder's resolution, or once upscaled to the image), more than max_area_frac of the
#: image, a duplicate removed by box NMS. The centre prompt's mask is kept whatever its IoU and stability.
DROP_REASONS: tuple[str, ...] = ("pred_iou", "stability", "too_small", "too_large", "duplicate")
CENTRE_DROP_REASONS: tuple[str, ...] = ("too_small", "too_large", "duplicate")


@dataclass(frozen=True)
class MaskCounts:
    """What became of one image's candidate masks before the quality gate (bank.json sums them: counts.masks).

    Each grid prompt gives SAM's three candidate masks (multimask output), the centre prompt one (the best of its
    three). They add up: grid_masks = 3 * grid_prompts = grid_kept + sum(grid_dropped); 1 = centre_kept +
    sum(centre_dropped); grid_kept + centre_kept = the masks `masks()` returns, which assign_masks gives kinds
    (segmentation_of adds its counts: assign_kept + sum(assign_dropped) = those masks)."""

    grid_prompts: int = 0
    grid_masks: int = 0
    grid_kept: int = 0
    grid_dropped: Mapping[str, int] = field(default_factory=dict)
    centre_kept: int = 0
    centre_dropped: Mapping[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, every reason present (0 when none dropped)."""
        return {
            "grid_prompts": self.grid_prompts,
            "grid_masks": self.grid_masks,
            "grid_kept": self.grid_kept,
            "grid_dropped": {r: int(self.grid_dropped.get(r, 0)) for r in DROP_REASONS},
            "centre_kept": self.centre_kept,
            "centre_dropped": {r: int(self.centre_dropped.get(r, 0)) for r in CENTRE_DROP_REASONS},
        }


@dataclass(frozen=True)
class SamMasks:
    """`SamSegmenter.counted_masks`' result: the masks (centre white-cell mask first), their predicted-IoU scores
    and what was dropped on the way."""

    masks: list[np.ndarray]
    scores: list[float]
    counts: MaskCounts


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when PyTorch sees a GPU, else 'cpu'; 'cuda' without one is a UserError."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        why = "this PyTorch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise UserError(f"--device cuda but {why}; use --device cpu (or auto), or install a CUDA build of PyTorch")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise UserError(f"unknown --device {device!r}; use auto, cpu or cuda")
    return device


def checkpoint_type(state_dict: dict) -> str | None:
    """The model type whose weights a SAM state dict holds (None when it is no SAM state dict)."""
    w = state_dict.get("image_encoder.patch_embed.proj.weight")
    return EMBED_DIM_TO_TYPE.get(int(w.shape[0])) if w is not None and hasattr(w, "shape") else None


def load_state_dict(checkpoint: str | Path, model_type: str) -> dict:
    """Read and check a SAM checkpoint for `model_type`; every problem is one UserError line."""
    import torch

    path = Path(checkpoint)
    fetch = f"`naturalize fetch-sam {model_type}`"
    if not path.is_file():
        raise UserError(f"SAM checkpoint {path} not found; download one with {fetch} and pass its path to --checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError:
        raise UserError(f"cannot read SAM checkpoint {path} (permission denied); fix its permissions") from None
    except Exception as e:  # torch raises many types for a file that is not a checkpoint
        raise UserError(
            f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}); re-download it with {fetch}"
        ) from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    found = checkpoint_type(state) if isinstance(state, dict) else None
    if found is None:
        raise UserError(
            f"{path} is not a segment-anything checkpoint (no image encoder weights); download one with {fetch}"
        )
    if found != model_type:
        raise UserError(f"{path} holds SAM {found} weights but --model-type is {model_type}; pass --model-type {found}")
    return state


def build_model(checkpoint: str | Path, model_type: str, device: str) -> Any:
    """sam_model_registry[model_type] with the checkpoint's weights, in eval mode on `device`."""
    from segment_anything import sam_model_registry

    if model_type not in MODEL_TYPES:
        raise UserError(f"unknown --model-type {model_type!r}; use one of {', '.join(MODEL_TYPES)}")
    device = resolve_device(device)
    state = load_state_dict(checkpoint, model_type)
    sam = sam_model_registry[model_type]()
    try:
        sam.load_state_dict(state)
    except RuntimeError as e:
        detail = next(
            (
                ln.strip()
                for ln in str(e).splitlines()
                if "size mismatch" in ln or "Missing key" in ln or "Unexpected key" in ln
            ),
            str(e).splitlines()[0],
        )
        raise UserError(
            f"{checkpoint} does not fit SAM {model_type} ({detail[:160]}); "
            f"check --model-type or re-download with `naturalize fetch-sam {model_type}`"
        ) from None
    return sam.to(device).eval()


def point_grid(width: int, height: int, per_side: int) -> np.ndarray:
    """(per_side**2, 2) float pixel coordinates (x, y) of a regular grid of cell centres (segment-anything's
    build_point_grid, scaled to the image)."""
    from segment_anything.utils.amg import build_point_grid

    return build_point_grid(per_side) * np.array([width, height], float)


class SamSegmenter:
    """Callable rgb -> Segmentation around a loaded SAM model (see the module doc)."""

    def __init__(self, model: Any, params: SamParams = SamParams()):
        from segment_anything import SamPredictor

        self.params = params
        self.predictor = SamPredictor(model)

    @classmethod
    def load(
        cls, checkpoint: str | Path, model_type: str = "vit_b", device: str = "auto", **params: Any
    ) -> SamSegmenter:
        """Build from a checkpoint file; `params` override SamParams fields."""
        return cls(build_model(checkpoint, model_type, device), SamParams(**params))

    def masks(self, rgb: np.ndarray) -> tuple[list[np.ndarray], list[float]]:
        """Deduplicated bool masks (centre white-cell mask first) and their predicted-IoU scores
        (`counted_masks` without the counts)."""
        found = self.counted_masks(rgb)
        return found.masks, found.scores

    def counted_masks(self, rgb: np.ndarray) -> SamMasks:
        """The masks `masks` gives, their scores, and what was dropped on the way per reason (MaskCounts).

        Prompts are decoded in batches to SAM's low-resolution (256 px) logits; quality filters and
        box NMS run there, and only the surviving masks are upscaled to the image size (exactly as
        SamPredictor.predict would). The predictor keeps this image's encoding until the next call."""
        import math

        import torch
        from segment_anything.utils.amg import batched_mask_to_box, calculate_stability_score
        from torchvision.ops import batched_nms

        p = self.params
        h, w = rgb.shape[:2]
        pred = self.predictor
        sam = pred.model
        pred.set_image(rgb)  # the one image encoding
        thr = sam.mask_threshold
        lh, lw = (math.ceil(s / 4) for s in pred.input_size)  # the image's part of the 256 px logits
        px = 4 * max(h, w) / sam.image_encoder.img_size  # one low-res pixel in image pixels
        logits_all, scores_all, prio_all, centre_all = [], [], [], []
        dropped = {True: Counter[str](), False: Counter[str]()}  # centre? -> reason -> masks
        decoded = {"prompts": 0, "masks": 0}  # of the grid

        def decode(points: np.ndarray, centre: bool) -> None:
            coords = torch.as_tensor(pred.transform.apply_coords(points, (h, w)), dtype=torch.float, device=pred.device)
            labels = torch.ones(len(points), dtype=torch.int, device=pred.device)
            sparse, dense = sam.prompt_encoder(points=(coords[:, None, :], labels[:, None]), boxes=None, masks=None)
            low, iou = sam.mask_decoder(
                image_embeddings=pred.features,
                image_pe=sam.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=True,
            )
            if centre:  # the white cell: the best of the three candidate masks, kept whatever its score
                best = int(iou[0].argmax())
                low, iou = low[:, best : best + 1], iou[:, best : best + 1]
            low, iou = low.flatten(0, 1), iou.flatten(0, 1)
            if not centre:
                decoded["prompts"] += len(points)
                decoded["masks"] += len(low)
            inside = low[:, :lh, :lw]
            area = (inside > thr).flatten(1).sum(1) * px * px
            filters = [("too_small", area < p.min_area), ("too_large", area > p.max_area_frac * h * w)]
            if not centre:
                stable = calculate_stability_score(inside, thr, 1.0)
                filters = [("pred_iou", iou < p.pred_iou_thresh), ("stability", stable < p.stability_thresh)] + filters
            keep = torch.ones_like(iou, dtype=torch.bool)
            for reason, fails in filters:  # each mask counted under the first filter it fails
                dropped[centre][reason] += int((keep & fails).sum())
                keep &= ~fails
            logits_all.append(low[keep])
            scores_all.append(iou[keep].float())
            prio_all.append(iou[keep].float() + (2.0 if centre else 0.0))
            centre_all.append(torch.full((int(keep.sum()),), centre, dtype=torch.bool, device=low.device))

        out_masks: list[np.ndarray] = []
        out_scores: list[float] = []
        kept = {True: 0, False: 0}
        with torch.inference_mode():
            decode(np.array([[w / 2.0, h / 2.0]]), centre=True)
            grid = point_grid(w, h, p.points_per_side)
            for i in range(0, len(grid), p.points_per_batch):
                decode(grid[i : i + p.points_per_batch], centre=False)
            low = torch.cat(logits_all)
            if len(low):
                scores, prio, is_centre = torch.cat(scores_all), torch.cat(prio_all), torch.cat(centre_all)
                same_class = torch.zeros(len(low), dtype=torch.long, device=low.device)
                # sorted by priority: the centre mask first
                keep = batched_nms(
                    batched_mask_to_box(low[:, :lh, :lw] > thr).float(), prio, same_class, p.box_nms_thresh
                )
                for c in (True, False):
                    dropped[c]["duplicate"] += int((is_centre == c).sum()) - int((is_centre[keep] == c).sum())
                full = sam.postprocess_masks(low[keep][:, None], pred.input_size, pred.original_size)[:, 0] > thr
                for m, sc, c in zip(full.cpu().numpy(), scores[keep].cpu().tolist(), is_centre[keep].cpu().tolist()):
                    if m.sum() >= p.min_area:
                        out_masks.append(m)
                        out_scores.append(float(sc))
                        kept[c] += 1
                    else:  # under min_area once upscaled to the image
                        dropped[c]["too_small"] += 1
        counts = MaskCounts(
            grid_prompts=decoded["prompts"],
            grid_masks=decoded["masks"],
            grid_kept=kept[False],
            grid_dropped=dict(dropped[False]),
            centre_kept=kept[True],
            centre_dropped=dict(dropped[True]),
        )
        return SamMasks(out_masks, out_scores, counts)

    def __call__(self, rgb: np.ndarray, label: str = "") -> Any:
        """Segmentation of one image, with its MaskCounts (as a dict) in `mask_counts`; `label` (the image's class)
        is not used by SAM."""
        from naturalize.segment.cells import as_rgb

        rgb = as_rgb(rgb)
        found = self.counted_masks(rgb)
        seg = segmentation_of(rgb, found.masks, found.scores)
        seg.mask_counts = {**found.counts.as_dict(), **seg.mask_counts}
        return seg


def segmentation_of(rgb: np.ndarray, masks: list[np.ndarray], scores: list[float]) -> Any:
    """RGB image and a mask generator's masks (with their scores) -> `Segmentation`: `assign_masks` gives the
    cells, and what it dropped goes to `mask_counts` (assign_kept, assign_dropped per reason); the background plate
    loses every cell and every other non-plate pixel, as the classical backend's does (a cell SAM missed, e.g. the
    white cell, must not stay on a plate the compositor takes for cell-free)."""
    from naturalize.segment.assign import assign_masks
    from naturalize.segment.cells import as_rgb, finish
    from naturalize.segment.colour import colour_maps

    rgb = as_rgb(rgb)
    cells, dropped = assign_masks(rgb, masks, scores)
    seg = finish(rgb, cells, also_remove=[colour_maps(rgb)[0]])
    seg.mask_counts = {"assign_kept": len(cells), "assign_dropped": dropped}
    return seg


@functools.lru_cache(maxsize=8)
def _md5(path: str, size: int, mtime_ns: int) -> str:
    """MD5 hex digest of a file (cached per path, size and modification time: a checkpoint is read once)."""
    from naturalize.fsio import file_digests

    return file_digests(Path(path), ("md5",))[0]


def checkpoint_md5(path: str | Path) -> str | None:
    """MD5 of a checkpoint file (the digest `naturalize fetch-sam` verifies; an official file's name holds its first
    6 hex digits), None when there is no such file."""
    p = Path(path)
    if not p.is_file():
        return None
    st = p.stat()
    return _md5(str(p.resolve()), st.st_size, st.st_mtime_ns)


def describe(checkpoint: str | Path, model_type: str = "vit_b", device: str = "auto", **params: Any) -> dict:
    """The settings a bank records for this backend (device left out: it does not change what a bank means). The
    checkpoint's MD5 makes its weights part of the bank's identity: a bank is not resumed with other weights, even
    from a file of the same name and size (a fine-tuned model), and bank.json names the weights that cut it."""
    from dataclasses import asdict

    path = Path(checkpoint)
    size = path.stat().st_size if path.is_file() else None
    return {
        "model_type": model_type,
        "checkpoint": path.name,
        "checkpoint_bytes": size,
        "checkpoint_md5": checkpoint_md5(path),
        **asdict(SamParams(**params)),
    }
