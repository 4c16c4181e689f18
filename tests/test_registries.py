"""Contract tests over the registries: every entry must keep these promises, so a new one is checked by adding it.

Segmentation backends (naturalize.segment.BACKENDS): on a drawn, non-PBC-sized image, masks and cells of the
image's shape, a background plate of the image's shape, a JSON-able description for bank.json.
Classifier models (classify.models.MODELS): build with random weights at a small size, output class
probabilities, and expose the feature map Score-CAM reads (classify.scorecam.feature_model).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import numpy as np
import pytest

from naturalize.drawn import draw_image, image_rng
from naturalize.segment import BACKENDS, make_segmenter

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

#: A drawn LY image cut to 250 x 320 (not the PBC 360 x 363): shapes must follow the image.
IMAGE_SHAPE = (250, 320)


def _classical() -> tuple[Callable, dict]:
    return make_segmenter("classical"), BACKENDS["classical"].describe()


def _sam() -> tuple[Callable, dict]:
    """SAM's own architecture at a tiny width and depth with random weights (a vit_b encodes one image in
    ~50 s on a 2-core box): the backend's prompting, filtering and mask handling run for real."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("segment_anything")
    from segment_anything.build_sam import _build_sam

    from naturalize.segment.sam import SamParams, SamSegmenter

    torch.manual_seed(0)
    model = _build_sam(encoder_embed_dim=32, encoder_depth=1, encoder_num_heads=1, encoder_global_attn_indexes=())
    params = SamParams(points_per_side=2, pred_iou_thresh=0.0, stability_thresh=0.0, min_area=1, max_area_frac=1.0)
    return SamSegmenter(model.eval(), params), BACKENDS["sam"].describe(checkpoint="none.pth", points_per_side=2)


#: How each backend is built for the contract (a new backend adds its line here).
BACKEND_FACTORIES: dict[str, Callable[[], tuple[Callable, dict]]] = {"classical": _classical, "sam": _sam}


def test_every_backend_has_a_contract_entry() -> None:
    assert set(BACKEND_FACTORIES) == set(BACKENDS)


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_backend_returns_masks_and_plate_of_the_image_shape(name: str) -> None:
    segmenter, described = BACKEND_FACTORIES[name]()
    rgb = draw_image("LY", image_rng(0, "LY", 0), *IMAGE_SHAPE)
    seg = segmenter(rgb)
    assert seg.background.shape == IMAGE_SHAPE + (3,) and seg.background.dtype == np.uint8
    for cell in seg.cells:
        assert cell.kind in ("RBC", "WBC", "PLT")
        assert cell.mask.shape == IMAGE_SHAPE and cell.mask.dtype == bool and cell.mask.any()
        assert 0.0 <= cell.score <= 1.0
        assert not (cell.usable and cell.touches_border)
    if hasattr(segmenter, "masks"):  # mask-proposal backends: the raw masks too (the centre prompt's is kept)
        masks, scores = segmenter.masks(rgb)
        assert len(masks) == len(scores) >= 1 and all(m.shape == IMAGE_SHAPE for m in masks)
    assert json.loads(json.dumps(described)) == described


def test_classical_backend_finds_the_drawn_cells_on_a_cut_image() -> None:
    segmenter, _ = _classical()
    seg = segmenter(draw_image("LY", image_rng(0, "LY", 0), *IMAGE_SHAPE))
    (wbc,) = seg.of_kind("WBC")
    x0, y0, x1, y1 = wbc.box
    assert abs((x0 + x1) / 2 - IMAGE_SHAPE[1] / 2) < 20 and abs((y0 + y1) / 2 - IMAGE_SHAPE[0] / 2) < 20
    assert len(seg.of_kind("RBC", usable_only=True)) >= 3


# ---------------------------------------------------------------- classifier models


def _models():
    keras = pytest.importorskip("keras")
    from classify.models import MODELS

    return keras, MODELS


def _model_names() -> list:
    try:
        from classify.models import MODELS
    except ImportError:  # pragma: no cover - classify extra not installed
        return []
    heavy = {"convnext_base", "vit_b16", "ensemble_average", "ensemble_cbam"}  # 85M+ parameters or two backbones
    return [pytest.param(n, marks=pytest.mark.slow) if n in heavy else n for n in MODELS]


@pytest.mark.parametrize("name", _model_names())
def test_every_model_builds_small_outputs_probabilities_and_exposes_score_cam_features(name: str) -> None:
    keras, MODELS = _models()
    from classify.models import create_model
    from classify.scorecam import feature_model, score_cam

    size = max(MODELS[name].min_size, 32)
    model = create_model(name, 5, None, "finetune", size)
    x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    y = keras.ops.convert_to_numpy(model(x, training=False))
    assert y.shape == (2, 5)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-4)
    features = feature_model(model)
    found = features(x, training=False)  # the CBAM ensemble: both branches' maps
    for maps in map(keras.ops.convert_to_numpy, found if isinstance(found, (list, tuple)) else [found]):
        assert maps.ndim == 4 and maps.shape[0] == 2 and maps.shape[1] >= 1 and maps.shape[2] >= 1
    cam, target, probs = score_cam(model, features, x[0], max_channels=4)
    assert cam.shape == (size, size) and 0.0 <= cam.min() and cam.max() <= 1.0
    assert target == int(np.argmax(probs)) and probs.shape == (5,)


# ---------------------------------------------------------------- protocols, scenes, recipes, checkpoints


def _help_text(*args: str) -> str:
    """A command's --help as a user reads it, wide, with its box drawing and line breaks flattened."""
    from naturalize.testing.cli import run_cli

    done = run_cli("naturalize", *args, "--help", env={"COLUMNS": "250"})
    assert done.returncode == 0, done.stderr
    return " ".join(done.stdout.replace("│", " ").split())


def test_every_protocol_scene_and_recipe_is_named_by_builds_help() -> None:
    from naturalize.compose.params import SCENES
    from naturalize.protocols import PROTOCOLS
    from naturalize.recipes import RECIPES

    text = _help_text("build")
    assert all(f"{p.name}: {p.help}" in text for p in PROTOCOLS.values()), text
    assert all(f"{s.name}: {s.help}" in text for s in SCENES.values()), text
    assert all(name in text for name in RECIPES) and "or custom." in text, text


def test_every_scene_is_named_by_composes_help_and_the_count_options_name_the_scenes_using_them() -> None:
    from naturalize.compose.params import SCENES

    text = _help_text("compose")
    assert all(f"{s.name}: {s.help}" in text for s in SCENES.values()), text
    assert "Red cells per image (--scene paper only)" in text  # transplant and matched take them from real images
    assert "the first near the centre (--scene matched or paper)" in text  # transplant keeps its donor's


def test_fetch_sam_help_gives_every_checkpoint_with_its_size() -> None:
    from naturalize.fetch import CHECKPOINTS, size_text

    text = _help_text("fetch-sam")
    assert "vit_b (375 MB) | vit_l (1.2 GB) | vit_h (2.5 GB)" in text, text  # the sizes Meta's files have
    assert all(f"{name} ({size_text(c.size_mb)})" in text for name, c in CHECKPOINTS.items())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("build", "2k-pbc", "--protocol", "nope"), "error: unknown protocol 'nope'; use clean (default) or paper"),
        (("build", "2k-pbc", "--scene", "nope"), "error: --scene 'nope' is not one of transplant, matched, paper"),
        (("build", "nope"), "error: unknown recipe 'nope'; use one of pbc11, pbc11-curated, 419-pmy, 1k-pbc, 2k-pbc"),
    ],
)
def test_an_unknown_name_is_one_error_line_listing_the_registry(tmp_path, args: tuple[str, ...], message: str) -> None:
    from naturalize.testing.cli import run_cli

    done = run_cli("naturalize", *args, "--pbc", str(tmp_path), "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and done.stderr.startswith(message) and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()


def test_scene_facts_agree() -> None:
    """Every scene that replaces a real white cell has a fallback for classes without one, and that fallback shows
    them; every option a scene takes from real images is a ComposeParams field; build composes a no-WBC class with
    the fallback and every other class with the scene asked for."""
    from dataclasses import fields

    from naturalize.build import scene_by_class
    from naturalize.classes import NO_WBC_CLASSES, WBC_CLASSES
    from naturalize.compose.params import PLACING_SCENE, SCENES, ComposeParams

    names = {f.name for f in fields(ComposeParams)}
    for scene in SCENES.values():
        assert set(scene.from_real) <= names, scene
        if scene.replaces_wbc:
            assert scene.no_wbc_scene, scene
        if scene.no_wbc_scene:
            assert not SCENES[scene.no_wbc_scene].replaces_wbc and not SCENES[scene.no_wbc_scene].no_wbc_scene
        by_class = scene_by_class([*NO_WBC_CLASSES, WBC_CLASSES[0]], scene.name)
        assert by_class == {
            **{c: scene.no_wbc_scene or scene.name for c in NO_WBC_CLASSES},
            WBC_CLASSES[0]: scene.name,
        }
    assert not SCENES[PLACING_SCENE].from_real and SCENES[PLACING_SCENE].places_rbc
    assert next(iter(SCENES)) == ComposeParams().scene  # the first is the default, as the help lists it


def test_protocol_facts_agree() -> None:
    """A protocol that keeps prepare's split (not pooled) must cut sprites from train only, else its val/test
    composites would leak; the pooled one lets any split lend sprites."""
    from naturalize.protocols import DEFAULT, PROTOCOLS

    for p in PROTOCOLS.values():
        assert p.pooled or p.sprite_split == "train", p
        assert p.sprite_source("train") and p.sprite_source("test") == (p.sprite_split is None)
        assert p.pooled == bool(p.warning)  # a protocol whose scores are optimistic says so before it builds
    assert DEFAULT == "clean" and not PROTOCOLS[DEFAULT].pooled


@pytest.mark.parametrize("protocol", ["clean", "paper", "", "later"])
def test_classify_names_a_datasets_protocol_from_the_registry(protocol: str) -> None:
    from classify.evaluate import protocol_line
    from naturalize.protocols import PROTOCOLS

    line = protocol_line({"protocol": protocol})
    if protocol in PROTOCOLS:
        assert line == f"protocol {protocol}: {PROTOCOLS[protocol].score_note}\n"
    else:
        assert line == ""
