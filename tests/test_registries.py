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
