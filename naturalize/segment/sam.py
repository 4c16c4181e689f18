"""The segment-anything backend: one image encoding, batched point prompts, masks -> cells.

In: an RGB image (HxWx3 uint8). Out: a `Segmentation`. Steps: (1) encode the image once;
(2) a centre point prompt for the white cell (every PBC crop is centred on one); (3) a regular
grid of point prompts, run in batches, for the red cells and platelets; (4) drop low-quality masks
(predicted IoU, stability under threshold shifts) and duplicates (box NMS, the centre mask first);
(5) `cells_from_masks` gives each mask a kind by colour, size and shape, `finish` inpaints the
background and sets the curation flags.

Loading checks the checkpoint before use: missing or unreadable files, weights of another model
type, and --device cuda without CUDA each raise one UserError line naming the fix.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from naturalize.fsio import UserError

MODEL_TYPES: tuple[str, ...] = ("vit_b", "vit_l", "vit_h")
#: Width of the image encoder's patch embedding -> model type (how a checkpoint tells its type).
EMBED_DIM_TO_TYPE: dict[int, str] = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}


@dataclass(frozen=True)
class SamParams:
    """Prompting and filtering settings (recorded in bank.json)."""

    points_per_side: int = 16  # grid of points_per_side**2 prompts for red cells and platelets
    points_per_batch: int = 64  # prompts decoded together
    pred_iou_thresh: float = 0.86  # keep masks whose predicted IoU is at least this
    stability_thresh: float = 0.90  # keep masks whose stability score is at least this
    box_nms_thresh: float = 0.7  # duplicate masks: box IoU above this
    min_area: int = 12  # masks smaller than this many pixels are noise
    max_area_frac: float = 0.5  # masks covering more of the image are the plate, not a cell


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
        """Deduplicated bool masks (centre white-cell mask first) and their predicted-IoU scores.

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
        logits_all, scores_all, prio_all = [], [], []

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
            inside = low[:, :lh, :lw]
            if centre:
                keep = torch.ones_like(iou, dtype=torch.bool)
            else:
                keep = (iou >= p.pred_iou_thresh) & (calculate_stability_score(inside, thr, 1.0) >= p.stability_thresh)
            area = (inside > thr).flatten(1).sum(1) * px * px
            keep &= (area >= p.min_area) & (area <= p.max_area_frac * h * w)
            logits_all.append(low[keep])
            scores_all.append(iou[keep].float())
            prio_all.append(iou[keep].float() + (2.0 if centre else 0.0))

        with torch.inference_mode():
            decode(np.array([[w / 2.0, h / 2.0]]), centre=True)
            grid = point_grid(w, h, p.points_per_side)
            for i in range(0, len(grid), p.points_per_batch):
                decode(grid[i : i + p.points_per_batch], centre=False)
            low = torch.cat(logits_all)
            if len(low) == 0:
                return [], []
            scores, prio = torch.cat(scores_all), torch.cat(prio_all)
            same_class = torch.zeros(len(low), dtype=torch.long, device=low.device)
            # sorted by priority: the centre mask first
            keep = batched_nms(batched_mask_to_box(low[:, :lh, :lw] > thr).float(), prio, same_class, p.box_nms_thresh)
            full = sam.postprocess_masks(low[keep][:, None], pred.input_size, pred.original_size)[:, 0] > thr
        out_masks, out_scores = [], []
        for m, sc in zip(full.cpu().numpy(), scores[keep].cpu().tolist()):
            if m.sum() >= p.min_area:
                out_masks.append(m)
                out_scores.append(float(sc))
        return out_masks, out_scores

    def __call__(self, rgb: np.ndarray, label: str = "") -> Any:
        """Segmentation of one image; `label` (the image's class) is not used by SAM."""
        from naturalize.segment.cells import as_rgb

        rgb = as_rgb(rgb)
        return segmentation_of(rgb, *self.masks(rgb))


def segmentation_of(rgb: np.ndarray, masks: list[np.ndarray], scores: list[float]) -> Any:
    """RGB image and a mask generator's masks (with their scores) -> `Segmentation`: `cells_from_masks` gives the
    cells; the background plate loses every cell and every other non-plate pixel, as the classical backend's does
    (a cell SAM missed, e.g. the white cell, must not stay on a plate the compositor takes for cell-free)."""
    from naturalize.segment.assign import cells_from_masks
    from naturalize.segment.cells import as_rgb, finish
    from naturalize.segment.colour import colour_maps

    rgb = as_rgb(rgb)
    return finish(rgb, cells_from_masks(rgb, masks, scores), also_remove=[colour_maps(rgb)[0]])


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
