"""Score-CAM (Wang et al. 2020) with keras.ops, and the `explain` command's PNG overlays.

For an image x and target class c: A = activation maps of the last conv layer (the model's `features`
layer); each map A_k is upsampled to the input size, min-max normalised to a mask M_k, the model scores
x * M_k, and the class-c softmax probability s_k weights the upsampled map. The heat map is
relu(sum_k s_k * up(A_k)), min-max normalised to 0..1.

Ensembles: an Average ensemble (`ensemble_average`) averages its members' softmaxes, so its map is the mean of
its members' maps (each member's Score-CAM with its own feature maps and its own class-c softmax, at the input
size), normalised again. The CBAM ensemble's head reads both branches, so its maps A are both branches'
CBAM-refined feature maps (EfficientNetV2-B0's and DenseNet-169's, each upsampled), scored by the whole model.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from naturalize.fsio import UserError, temp_target
from naturalize.outputs import dropped_if_unused
from naturalize.paths import fit_name, fit_shortened

#: Layers whose output Score-CAM uses beside `features`: the CBAM ensemble's DenseNet branch (its `features` is
#: the EfficientNet branch's CBAM output; the head reads both).
EXTRA_FEATURES = ("cbam_densenet",)


def feature_model(model):
    """input -> last conv feature map (B, h, w, K), from the `features` layer (nested members searched too); for
    the CBAM ensemble a list of both branches' maps (`features` and EXTRA_FEATURES)."""
    import keras

    from classify.layers import PatchGrid

    def find(m):
        names = [layer.name for layer in m.layers]
        if "features" in names:
            outs = [m.get_layer(n).output for n in ("features", *EXTRA_FEATURES) if n in names]
            return keras.Model(m.input, outs if len(outs) > 1 else outs[0])  # one input, as the model is called
        for layer in m.layers:
            if isinstance(layer, keras.Model) and layer.name == "vit_b16_backbone":
                inp = keras.Input(m.inputs[0].shape[1:])
                return keras.Model(inp, PatchGrid()(layer(m.get_layer("preprocess")(inp))))
        for layer in m.layers:
            if isinstance(layer, keras.Model) and layer.name.startswith("member_"):
                return find(layer)
        return None

    fm = find(model)
    if fm is None:
        raise UserError(f"model {model.name} has no `features` layer to explain; explain a registry model's run")
    return fm


def infer(model, x: np.ndarray):
    """`model`'s output(s) for the batch `x` as numpy, without an autograd graph. Under the torch backend a plain
    `model(x)` records the graph of every trainable weight (a fine-tuned DenseNet-121's Score-CAM at 224 px took
    16.6 GB instead of 7.2, and an ensemble's 126 GB of a GPU), so there it runs Keras's inference step
    (`predict_on_batch`, no_grad); other backends record nothing outside a training step, and their eager call
    spares the graph tracing that `predict_on_batch` does per input shape under TensorFlow."""
    import keras

    if keras.backend.backend() == "torch":
        return model.predict_on_batch(x)
    return keras.tree.map_structure(keras.ops.convert_to_numpy, model(x, training=False))


def score_cam(
    model, features, image: np.ndarray, target: int | None = None, max_channels: int = 0, batch_size: int = 32
) -> tuple[np.ndarray, int, np.ndarray]:
    """Score-CAM of one image (S, S, 3, 0..255) -> (map (S, S) in 0..1, target class, class probabilities).

    max_channels > 0 keeps only the channels with the largest mean activation (faster, approximate).
    """
    from keras import ops

    x = np.asarray(image, np.float32)[None]
    probs = infer(model, x)[0]
    target = int(np.argmax(probs)) if target is None else int(target)
    found = infer(features, x)  # (1, h, w, K), or a list of such maps (one per CBAM branch)
    h, w = image.shape[:2]
    ups = []
    for acts in [ops.convert_to_tensor(a) for a in (found if isinstance(found, (list, tuple)) else [found])]:
        if max_channels and acts.shape[-1] > max_channels:  # per feature map: each branch keeps its N most active
            order = np.argsort(-ops.convert_to_numpy(ops.mean(acts, axis=(0, 1, 2))), kind="stable")[:max_channels]
            acts = ops.take(acts, ops.convert_to_tensor(np.sort(order)), axis=-1)
        ups.append(ops.transpose(ops.image.resize(acts, (h, w), interpolation="bilinear")[0], (2, 0, 1)))
    up = ups[0] if len(ups) == 1 else ops.concatenate(ups, axis=0)  # (K, S, S)
    lo = ops.min(up, axis=(1, 2), keepdims=True)
    hi = ops.max(up, axis=(1, 2), keepdims=True)
    valid = ops.convert_to_numpy(ops.reshape(hi - lo, (-1,))) > 0
    masks = (up - lo) / ops.maximum(hi - lo, 1e-12)
    scores = np.zeros(int(up.shape[0]), np.float32)
    for start in range(0, len(scores), batch_size):
        m = masks[start : start + batch_size]
        masked = ops.convert_to_numpy(m[..., None]) * x
        scores[start : start + batch_size] = infer(model, masked)[:, target]
    scores[~valid] = 0.0
    cam = ops.relu(ops.sum(up * ops.convert_to_tensor(scores)[:, None, None], axis=0))
    cam = ops.convert_to_numpy(cam).astype(np.float64)
    span = cam.max() - cam.min()
    cam = (cam - cam.min()) / span if span > 0 else np.zeros_like(cam)
    return cam, target, probs


@dataclass(frozen=True)
class Explainer:
    """What `explain` maps for a run's model: `parts` [(name, scorer model, feature model)] whose Score-CAM maps are
    averaged (one part for most models; an Average ensemble's members), `label` for the overlay panel and `method`
    for the PNG's provenance."""

    model: Any
    parts: list[tuple[str, Any, Any]]
    label: str
    method: str


def explainer(model) -> Explainer:
    """The Explainer of a run's model: an Average ensemble (its output layer averages nested `member_*` classifiers)
    -> each member with its own features; the CBAM ensemble -> both branches' maps; else the `features` layer."""
    import keras

    members = [layer for layer in model.layers if isinstance(layer, keras.Model) and layer.name.startswith("member_")]
    if len(members) > 1 and isinstance(model.get_layer("predictions"), keras.layers.Average):
        names = [m.name.removeprefix("member_") for m in members]
        return Explainer(
            model,
            [(n, m, feature_model(m)) for n, m in zip(names, members)],
            f"Score-CAM, mean of {len(members)} members",
            f"Score-CAM, mean of the members' maps ({', '.join(names)})",
        )
    features = feature_model(model)
    if isinstance(features.output, (list, tuple)):
        return Explainer(
            model,
            [(model.name, model, features)],
            "Score-CAM, both CBAM branches",
            "Score-CAM over both branches' CBAM-refined feature maps (efficientnetv2b0, densenet169)",
        )
    return Explainer(model, [(model.name, model, features)], "Score-CAM", "Score-CAM")


def feature_grids(ex: Explainer) -> list[tuple[int, int]]:
    """The spatial size (h, w) of every feature map `ex` weighs (one per part, both CBAM branches)."""
    grids = []
    for _, _, features in ex.parts:
        outs = features.output if isinstance(features.output, (list, tuple)) else [features.output]
        grids += [(int(t.shape[1]), int(t.shape[2])) for t in outs]
    return grids


def check_explainable(ex: Explainer, run: Path, model_name: str, size: int) -> None:
    """UserError when every feature map of `ex` is 1x1 (a stride-32 backbone at --image-size 32): upsampled, each map
    is a constant, which Score-CAM leaves out, so every heat map would be blank."""
    if all(g == (1, 1) for g in feature_grids(ex)):
        raise UserError(
            f"cannot explain {run}: its {model_name} has 1x1 feature maps at --image-size {size} (one value per map, "
            f"so Score-CAM has nothing to place and every heat map would be blank); explain a run trained at "
            f"--image-size {2 * size} or more"
        )


def explain_map(
    ex: Explainer, image: np.ndarray, target: int | None = None, max_channels: int = 0
) -> tuple[np.ndarray, int, np.ndarray]:
    """Score-CAM of one image (S, S, 3, 0..255) for `ex`'s model -> (map (S, S) in 0..1, target class, the model's
    class probabilities): one part's map, or the mean of the parts' maps (each for the model's target class),
    normalised to 0..1 again."""
    if len(ex.parts) == 1:
        _, scorer, features = ex.parts[0]
        return score_cam(scorer, features, image, target, max_channels)
    probs = infer(ex.model, np.asarray(image, np.float32)[None])[0]
    target = int(np.argmax(probs)) if target is None else int(target)
    cam = np.mean([score_cam(m, f, image, target, max_channels)[0] for _, m, f in ex.parts], axis=0)
    span = cam.max() - cam.min()
    return ((cam - cam.min()) / span if span > 0 else np.zeros_like(cam)), target, probs


def resize_map(cam: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A heat map (S, S) in 0..1 -> (H, W) by bilinear interpolation (the image's own resolution), still 0..1."""
    import cv2

    h, w = shape
    return np.clip(cv2.resize(cam.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR), 0, 1)


def cam_names(inputs: Sequence[str | os.PathLike], paths: Sequence[Path]) -> list[Path]:
    """Each image's PNG path relative to OUT: `<stem>_scorecam.png` in the image's folder relative to the inputs'
    common folder (a folder input itself, a file input's parent), so images of the same name in different
    subfolders never share a PNG: FOLDER/a/b/x.jpg -> a/b/x_scorecam.png, one file x.jpg -> x_scorecam.png.
    Two images of one stem in one folder (x.jpg, x.png) keep their suffix (x.jpg_scorecam.png); UserError if
    two images would still share a PNG."""
    roots = [os.path.abspath(i) if Path(i).is_dir() else os.path.dirname(os.path.abspath(i)) for i in inputs]
    root = os.path.commonpath(roots)
    rel = [Path(os.path.relpath(os.path.abspath(p), root)) for p in paths]
    stems = Counter((r.parent, r.stem) for r in rel)
    names = [r.parent / fit_name(f"{r.name if stems[r.parent, r.stem] > 1 else r.stem}_scorecam.png") for r in rel]
    seen: dict[Path, Path] = {}
    for p, name in zip(paths, names):
        if name in seen:
            raise UserError(f"images {seen[name]} and {p} would both write {name}; rename one or explain them apart")
        seen[name] = p
    return names


def written_by_explain(rel: str) -> bool:
    """Whether `rel`, a file's path inside explain's OUT ('a/b/x_scorecam.png'), is one explain writes there (a PNG
    named by cam_names, maybe shortened by fit_name), or the temporary file of one."""
    name = rel.rpartition("/")[2]
    name = temp_target(name) or name
    return name.endswith("_scorecam.png") or fit_shortened(name, ".png")


def unique_images(paths: Sequence[Path]) -> list[Path]:
    """`paths` without repeats of one file (given directly and found in a given folder), in order."""
    seen: set[str] = set()
    kept = []
    for p in paths:
        key = os.path.abspath(p)
        if key not in seen:
            seen.add(key)
            kept.append(p)
    return kept


def explain(
    run: str | os.PathLike,
    inputs: Sequence[str | os.PathLike],
    out: str | os.PathLike | None = None,
    target: str | None = None,
    max_channels: int = 256,
    progress: bool = True,
    warn: Callable[[str], None] | None = None,
) -> list[Path]:
    """Score-CAM PNG (image | overlay, both at the image's own resolution) per input image into OUT (default
    RUN/explain), keeping the images' folders below the inputs' common folder (`cam_names`); returns the PNG
    paths. The map is computed at the run's input size and upsampled; unreadable images are skipped and named
    through `warn`."""
    from tqdm import tqdm

    from classify import runs
    from classify.images import describe_bad, load_image
    from classify.plots import overlay_heatmap
    from classify.predict import gather_images

    if max_channels < 0:
        raise UserError(f"--channels {max_channels} must be >= 0 (0 = all feature maps, e.g. --channels 256)")
    run, config, classes = runs.open_run(run)
    if target is not None and target not in classes:
        raise UserError(f"--target {target!r} is not one of the run's classes {', '.join(classes)}")
    paths = unique_images(gather_images(inputs, warn))
    names = dict(zip(paths, cam_names(inputs, paths)))
    out = Path(out) if out is not None else run / "explain"
    with dropped_if_unused(out):  # a failure before the first PNG leaves no folder holding only the marker
        top = sorted({n.parts[0] for n in names.values()})  # the marker lists top-level names
        runs.claim_outputs(out, run, [(f"input {p}", p) for p in inputs], "classify-explain", top)
        ex = explainer(runs.load_model(run / runs.MODEL))
        size = int(config["image_size"])
        check_explainable(ex, run, config["model"], size)
        written = []
        bad: list[tuple[Path, str]] = []
        for p in tqdm(paths, desc="Score-CAM", unit="img", disable=not progress):
            try:
                img = load_image(p, size)
                full = load_image(
                    p, None
                )  # the map is drawn over the image at its own resolution, not the network's input
            except UserError as e:
                bad.append((p, str(e.__cause__ or e)))
                continue
            cam, k, probs = explain_map(ex, img, None if target is None else classes.index(target), max_channels)
            pred = int(np.argmax(probs))
            dest = out / names[p]
            overlay_heatmap(
                full,
                resize_map(cam, full.shape[:2]),
                dest,
                f"{p.name}: predicted {classes[pred]} ({probs[pred]:.2f}); map for {classes[k]}",
                {
                    "source": str(p.resolve()),
                    "run": str(run.resolve()),
                    "method": ex.method,
                    "target": classes[k],
                    "max_channels": max_channels,
                    "input_size": size,
                    "image_size": list(full.shape[1::-1]),
                },
                ex.label,
            )
            written.append(dest)
        if bad and not written:
            raise UserError(describe_bad(bad) + "; none left to explain: pass readable images")
    if bad and warn is not None:
        warn("warning: skipped " + describe_bad(bad))
    return written
