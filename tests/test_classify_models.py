"""classify: model registry, weights handling, dataset indexing, image conversion, Score-CAM."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")

from classify.datasets import load_dataset  # noqa: E402
from classify.images import cached_array, load_image  # noqa: E402
from classify.models import backbone_of, create_model  # noqa: E402
from naturalize.fsio import UserError  # noqa: E402


def test_custom_cnn_is_the_papers_figure_9_with_3310251_parameters():
    model = create_model("custom_cnn", 11, "none", "finetune", 224)
    assert model.count_params() == 3_310_251
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [16, 32, 64, 128]
    assert all(c.kernel_size == (3, 3) and c.padding == "same" for c in convs)
    assert sum(isinstance(layer, keras.layers.MaxPooling2D) for layer in model.layers) == 4
    assert [d.units for d in model.layers if isinstance(d, keras.layers.Dense)] == [128, 11]


def test_vit_b16_has_the_base_configuration():
    model = create_model("vit_b16", 11, "none", "finetune", 32)
    backbone = backbone_of(model)[0]
    attn = [layer for layer in backbone.layers if isinstance(layer, keras.layers.MultiHeadAttention)]
    assert len(attn) == 12 and attn[0].num_heads == 12
    assert backbone.get_layer("patch_embed").kernel_size == (16, 16)
    assert backbone.get_layer("patch_embed").filters == 768


def test_transfer_mode_freezes_the_backbone_and_trains_the_head(tmp_path):
    tuned = create_model("efficientnetv2b0", 4, "none", "finetune", 32)
    path = tmp_path / "backbone.weights.h5"  # transfer needs pretrained weights: this backbone's, from a file
    backbone_of(tuned)[0].save_weights(path)
    model = create_model("efficientnetv2b0", 4, str(path), "transfer", 32)
    (base,) = backbone_of(model)
    assert not base.trainable and base.trainable_weights == []
    assert {w.path.split("/")[0] for w in model.trainable_weights} == {"predictions"}
    assert len(tuned.trainable_weights) > len(model.trainable_weights)


def test_unknown_model_and_bad_modes_are_one_line_user_errors():
    with pytest.raises(UserError, match="unknown model 'resnet'.*custom_cnn.*ensemble_cbam"):
        create_model("resnet", 11)
    with pytest.raises(UserError, match="--mode finetune"):
        create_model("custom_cnn", 11, "none", "transfer", 64)
    # a frozen backbone must be pretrained: weights none (vit_b16's default) is refused, before anything is built
    for name, weights in (("efficientnetv2b0", "none"), ("efficientnetv2b0", None), ("vit_b16", "none")):
        with pytest.raises(UserError, match=rf"--mode transfer freezes the {name} backbone.*--mode finetune$") as e:
            create_model(name, 11, weights, "transfer", 32)
        assert "\n" not in str(e.value) and "--weights PATH" in str(e.value)
    with pytest.raises(UserError, match="no ImageNet weights for vit_b16.*--weights PATH"):
        create_model("vit_b16", 11, "imagenet", "finetune", 32)
    with pytest.raises(UserError, match="neither 'imagenet', 'none' nor an existing weights file"):
        create_model("custom_cnn", 11, "/no/such/file.weights.h5", "finetune", 64)


def test_offline_imagenet_asks_an_ensemble_for_a_whole_model_file_and_a_backbone_model_for_a_backbone_file(
    monkeypatch,
):
    real = keras.applications.EfficientNetV2B0

    def offline(*args, weights=None, **kwargs):
        if weights == "imagenet":  # what keras.utils.get_file raises without a network
            raise Exception("URL fetch failure on https://storage.googleapis.com/x.h5: None -- [Errno 111] refused")
        return real(*args, weights=weights, **kwargs)

    monkeypatch.setattr(keras.applications, "EfficientNetV2B0", offline)
    for name in ("ensemble_average", "ensemble_cbam"):
        with pytest.raises(UserError) as e:
            create_model(name, 11, "imagenet", "finetune", 32)
        line = str(e.value)
        assert line.startswith(f"could not get the ImageNet weights for {name} (its efficientnetv2b0 member: ")
        assert "[Errno 111] refused" in line and f"weights of the whole {name} model" in line
        assert "model.save_weights(...)" in line and "--weights none" in line
        assert "member_" not in line and "backbone" not in line
    with pytest.raises(UserError, match=r"for efficientnetv2b0 \(.*refused\); offline, pass --weights PATH \(a local"):
        create_model("efficientnetv2b0", 11, "imagenet", "finetune", 32)


def test_weights_path_round_trip_into_the_backbone_and_into_a_whole_model(tmp_path):
    src = create_model("efficientnetv2b0", 3, "none", "finetune", 32)
    (base,) = backbone_of(src)
    path = tmp_path / "effnet_backbone.weights.h5"
    base.save_weights(path)
    loaded = create_model("efficientnetv2b0", 7, str(path), "transfer", 32)
    (base2,) = backbone_of(loaded)
    for a, b in zip(base.get_weights(), base2.get_weights()):
        np.testing.assert_array_equal(a, b)

    cnn = create_model("custom_cnn", 11, "none", "finetune", 64)
    cnn_path = tmp_path / "cnn.weights.h5"
    cnn.save_weights(cnn_path)
    fresh = create_model("custom_cnn", 11, str(cnn_path), "finetune", 64)
    x = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(cnn(x)), keras.ops.convert_to_numpy(fresh(x)), rtol=1e-6)

    with warnings.catch_warnings(record=True) as shown:  # Keras's warnings while failing are not shown
        warnings.simplefilter("always")
        with pytest.raises(UserError, match="cannot load weights .* same architecture") as e:
            create_model("custom_cnn", 11, str(path), "finetune", 64)
    assert "6 of the model's layers do not match it, e.g. conv1: Layer 'conv1' expected 2 variables" in str(e.value)
    assert "\n" not in str(e.value) and not [w for w in shown if "Skipping" in str(w.message)]
    # another number of classes: the message names the layer and both shapes, not Keras's multi-line dump
    with pytest.raises(UserError, match=r"layer predictions: the model's \(128, 7\), the file's \(128, 11\)\)") as e:
        create_model("custom_cnn", 7, str(cnn_path), "finetune", 64)
    assert "\n" not in str(e.value) and "Example error message" not in str(e.value)


def _write(path, array, mode=None):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)


def test_grayscale_rgba_16bit_and_odd_sized_images_are_converted(tmp_path):
    rng = np.random.default_rng(0)
    _write(tmp_path / "gray.png", rng.integers(0, 255, (50, 70), dtype=np.uint8))
    _write(tmp_path / "rgba.png", rng.integers(0, 255, (30, 20, 4), dtype=np.uint8))
    _write(tmp_path / "odd.jpg", rng.integers(0, 255, (361, 363, 3), dtype=np.uint8))
    _write(tmp_path / "deep.png", rng.integers(0, 65535, (40, 40), dtype=np.uint16).astype(np.uint16))
    for name in ("gray.png", "rgba.png", "odd.jpg", "deep.png"):
        a = load_image(tmp_path / name, 24)
        assert a.shape == (24, 24, 3) and a.dtype == np.uint8
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(UserError, match="cannot read image .*broken.jpg"):
        load_image(tmp_path / "broken.jpg", 24)


def test_a_16bit_image_reads_as_its_8bit_original_not_contrast_stretched(tmp_path):
    # a 16-bit PNG of an 8-bit image (v * 257), as a scanner or converter writes it, must give the same pixels:
    # a per-image min-max stretch gave a PBC cell another contrast (up to 30 levels) and other probabilities
    rng = np.random.default_rng(0)
    gray = rng.integers(40, 200, (30, 30), dtype=np.uint8)
    _write(tmp_path / "gray8.png", gray)
    _write(tmp_path / "gray16.png", gray.astype(np.uint16) * 257)
    np.testing.assert_array_equal(load_image(tmp_path / "gray16.png", None), load_image(tmp_path / "gray8.png", None))


def test_a_decompression_bomb_is_an_unreadable_image_not_a_traceback(tmp_path):
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)  # 400 M pixels claimed, a few bytes stored
    (tmp_path / "huge.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")
    )
    with pytest.raises(UserError, match="cannot read image .*huge.png: Image size .* exceeds limit"):
        load_image(tmp_path / "huge.png", 24)


def test_a_score_cam_png_of_a_small_crop_is_drawn_large_enough_to_read(tmp_path):
    """A 64x64 cell crop gave a 363x159 PNG whose title ran over the panel titles; small images are drawn at least
    256 px a side (pixel for pixel), and a 360x363 PBC image keeps about one figure pixel per image pixel."""
    from PIL import Image

    from classify.plots import overlay_heatmap

    rng = np.random.default_rng(0)
    for h, w in ((64, 64), (8, 8), (360, 363)):
        overlay_heatmap(
            rng.integers(0, 255, (h, w, 3), dtype=np.uint8), rng.random((h, w)), tmp_path / "o.png", "x.jpg: EO", {}
        )
        width, height = Image.open(tmp_path / "o.png").size
        side = max(256, h)
        assert width >= 2 * side and side <= height <= side + 120, (h, w, width, height)


def test_decode_cache_is_reused_and_matches_direct_decoding(tmp_path, monkeypatch):
    monkeypatch.setenv("CLASSIFY_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        _write(tmp_path / f"im{i}.png", rng.integers(0, 255, (40, 44, 3), dtype=np.uint8))
        paths.append(tmp_path / f"im{i}.png")
    first = cached_array(paths, 16, progress=False)
    files = list((tmp_path / "cache").glob("*.npy"))
    assert len(files) == 1
    again = cached_array(paths, 16, progress=False)
    assert isinstance(again, np.memmap)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(again[3], load_image(paths[3], 16))


def _tree(root, spec):
    """spec: {relative folder: number of images}."""
    rng = np.random.default_rng(0)
    for folder, n in spec.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            _write(root / folder / f"{folder.split('/')[-1]}_{i}.png", rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))


def test_split_tree_with_missing_or_extra_classes_or_empty_split_is_rejected(tmp_path):
    _tree(tmp_path / "bad", {"train/BA": 2, "train/EO": 2, "val/BA": 1, "test/BA": 1, "test/EO": 1})
    with pytest.raises(UserError, match="split val/ lacks EO compared with train/"):
        load_dataset(tmp_path / "bad")
    _tree(tmp_path / "extra", {"train/BA": 2, "val/BA": 1, "val/LY": 1})
    with pytest.raises(UserError, match="split val/ has extra LY"):
        load_dataset(tmp_path / "extra")
    _tree(tmp_path / "empty", {"train/BA": 2})
    (tmp_path / "empty" / "val" / "BA").mkdir(parents=True)
    with pytest.raises(UserError, match="split val/ holds no class folders with images"):
        load_dataset(tmp_path / "empty")
    with pytest.raises(UserError, match="not found"):
        load_dataset("no-such-dataset-name")


def test_plain_class_tree_is_split_80_10_10_stratified_and_seeded(tmp_path, monkeypatch):
    _tree(tmp_path / "data" / "plain", {"LY": 20, "BA": 30, "weird": 10})
    monkeypatch.setenv("NATURALIZE_DATA", str(tmp_path / "data"))
    d = load_dataset("plain", seed=3)
    assert d.layout == "plain" and d.classes == ("BA", "LY", "weird")
    counts = {s: np.bincount(d.labels(s), minlength=3).tolist() for s in ("train", "val", "test")}
    assert counts == {"train": [24, 16, 8], "val": [3, 2, 1], "test": [3, 2, 1]}
    assert load_dataset("plain", seed=3).items == d.items
    assert load_dataset("plain", seed=4).items != d.items


TORCH_CAM_PROBE = """
import numpy as np, torch
from classify.models import create_model
from classify.scorecam import explain_map, explainer
model = create_model("custom_cnn", 3, "none", "finetune", 32)
graphs = []
for layer in model.layers:  # under torch every Keras layer is a torch module: note whether its output keeps a graph
    layer.register_forward_hook(lambda mod, args, out: graphs.append(bool(getattr(out, "requires_grad", False))))
cam, target, probs = explain_map(explainer(model), np.full((32, 32, 3), 120, np.float32), max_channels=8)
print("calls", len(graphs), "with graph", sum(graphs), "shape", cam.shape)
"""


def test_score_cam_under_torch_builds_no_autograd_graph(tmp_path):
    """Score-CAM called the model as `model(x)`: under the torch backend that records the autograd graph of every
    trainable weight. Explaining a fine-tuned DenseNet-121 at 224 px took 16.6 GB of memory instead of 7.2 (and
    2.4x the time), and a fine-tuned ensemble ran a 139 GB GPU out of memory. Every forward pass now goes through
    Keras's inference step."""
    import subprocess
    import sys

    pytest.importorskip("torch")
    env = {**os.environ, "KERAS_BACKEND": "torch", "TF_CPP_MIN_LOG_LEVEL": "3"}
    r = subprocess.run([sys.executable, "-c", TORCH_CAM_PROBE], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    line = r.stdout.strip().splitlines()[-1]
    calls, with_graph = int(line.split()[1]), int(line.split()[4])
    assert calls > 0 and with_graph == 0, line
    assert line.endswith("shape (32, 32)")


def test_score_cam_s_feature_model_takes_the_image_as_the_model_does():
    """The feature model was built on the list `model.inputs` and called with one tensor, so Keras warned "The
    structure of `inputs` doesn't match the expected structure. Expected: ['image']" at every Score-CAM."""
    from classify.scorecam import explain_map, explainer

    model = create_model("custom_cnn", 3, "none", "finetune", 32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cam, _, _ = explain_map(explainer(model), np.full((32, 32, 3), 120, np.float32), max_channels=8)
    assert cam.shape == (32, 32)
    assert not [w for w in caught if "structure" in str(w.message)], [str(w.message) for w in caught]


def test_score_cam_peaks_on_a_planted_discriminative_patch():
    from classify.scorecam import feature_model, score_cam

    size, patch = 48, 12

    def toy(n, rng):
        x = rng.normal(110, 20, (n, size, size, 3)).clip(0, 255)
        y = np.arange(n) % 2
        pos = rng.integers(0, size - patch, (n, 2))
        for i in np.flatnonzero(y):
            r, c = pos[i]
            x[i, r : r + patch, c : c + patch] = 240
        return x.astype("float32"), y, pos

    keras.utils.set_random_seed(0)
    x, y, _ = toy(192, np.random.default_rng(0))
    model = create_model("custom_cnn", 2, "none", "finetune", size)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=5, batch_size=32, verbose=0)
    features = feature_model(model)
    xt, yt, pt = toy(8, np.random.default_rng(1))
    for i in np.flatnonzero(yt):
        cam, target, probs = score_cam(model, features, xt[i], 1)
        assert cam.shape == (size, size) and target == 1 and 0 <= cam.min() and cam.max() == pytest.approx(1)
        r, c = np.unravel_index(cam.argmax(), cam.shape)
        pr, pc = pt[i]
        assert pr - 2 <= r < pr + patch + 2 and pc - 2 <= c < pc + patch + 2, (r, c, pr, pc)
        inside = np.zeros_like(cam, bool)
        inside[pr : pr + patch, pc : pc + patch] = True
        assert cam[inside].mean() > 1.5 * cam[~inside].mean()


@pytest.mark.slow
def test_a_saved_transfer_vit_reloads_identical_and_still_frozen(tmp_path):
    from classify.runs import load_model, save_model

    path = tmp_path / "vit_backbone.weights.h5"  # transfer needs pretrained weights: a saved ViT backbone's
    backbone_of(create_model("vit_b16", 3, "none", "finetune", 32))[0].save_weights(path)
    model = create_model("vit_b16", 3, str(path), "transfer", 32)
    save_model(model, tmp_path / "vit.keras")
    loaded = load_model(tmp_path / "vit.keras")
    assert len(loaded.trainable_weights) == len(model.trainable_weights) == 2  # the new head only
    x = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(x, training=False)),
        keras.ops.convert_to_numpy(loaded(x, training=False)),
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.parametrize("shape", [(64, 64), (360, 363)])
def test_the_score_cam_overlay_is_the_image_s_twin_with_a_labelled_colour_bar(shape) -> None:
    """The colour bar took its room from the overlay's panel: the overlay was drawn smaller than the image beside
    it and lower, so a hot spot could not be matched to the cell under it by eye; its scale had no name."""
    import matplotlib.pyplot as plt

    from classify.plots import overlay_figure

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (*shape, 3), dtype=np.uint8)
    fig = overlay_figure(image, rng.random(shape), "x.jpg: predicted EO (0.50); map for EO")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    left, right = (ax.get_images()[0].get_window_extent(renderer) for ax in fig.axes[:2])
    bar_label = fig.axes[2].get_ylabel()
    plt.close(fig)
    assert abs(left.width - right.width) < 1 and abs(left.height - right.height) < 1, (left, right)
    assert abs(left.y0 - right.y0) < 1
    assert "0..1" in bar_label


def _ensemble_run(tmp_path, name: str, size: int, classes=("BA", "EO", "LY")):
    """A run folder holding an untrained (random) ensemble as train would save it: model.keras, config, classes."""
    import json

    from classify.runs import save_model

    keras.utils.set_random_seed(0)
    model = create_model(name, len(classes), "none", "finetune", size)
    run = tmp_path / name
    run.mkdir()
    save_model(model, run / "model.keras")
    config = {"dataset": str(tmp_path), "model": name, "mode": "finetune", "image_size": size, "seed": 0}
    (run / "config.json").write_text(json.dumps(config))
    (run / "classes.json").write_text(json.dumps(list(classes)))
    return run, model


@pytest.mark.slow
def test_explain_maps_an_average_ensemble_as_the_mean_of_its_members_maps(sample_release, tmp_path):
    """explain on an ensemble_average run mapped only its EfficientNet member (feature_model found the first
    member's `features`), undocumented: the map is now the mean of both members' Score-CAM maps (each with its
    own feature maps and softmax, for the ensemble's class), and the PNG says so."""
    import json

    from PIL import Image

    from classify.runs import load_model
    from classify.scorecam import explain, explain_map, explainer, feature_model, score_cam

    size = 64  # DenseNet-169's last map is 2x2 here (1x1 at 32 px: a constant, which Score-CAM leaves out)
    run, _ = _ensemble_run(tmp_path, "ensemble_average", size)
    model = load_model(run / "model.keras")
    ex = explainer(model)
    assert [n for n, _, _ in ex.parts] == ["efficientnetv2b0", "densenet169"]
    jpg = sorted(sample_release.glob("eosinophil/*.jpg"))[0]
    img = load_image(jpg, size)
    cam, k, probs = explain_map(ex, img, None, 16)
    np.testing.assert_allclose(probs, keras.ops.convert_to_numpy(model(img[None].astype("float32")))[0], rtol=1e-5)
    assert k == int(np.argmax(probs)) and cam.shape == (size, size)
    members = [model.get_layer(f"member_{n}") for n in ("efficientnetv2b0", "densenet169")]
    maps = [score_cam(m, feature_model(m), img, k, 16)[0] for m in members]
    assert all(m.max() > 0 for m in maps)  # both members contribute
    mean = np.mean(maps, axis=0)
    np.testing.assert_allclose(cam, (mean - mean.min()) / (mean.max() - mean.min()), atol=1e-6)
    assert not np.allclose(cam, maps[0], atol=1e-3)  # not the EfficientNet member's map alone, as before

    (png,) = explain(run, [jpg], tmp_path / "cams", max_channels=16, progress=False)
    with Image.open(png) as im:
        meta = json.loads(im.text["provenance"])
    assert meta["method"] == "Score-CAM, mean of the members' maps (efficientnetv2b0, densenet169)"


@pytest.mark.slow
def test_explain_maps_both_branches_of_a_cbam_ensemble(tmp_path):
    """The CBAM ensemble's map used only its EfficientNet branch's CBAM output, though its head reads both: its
    Score-CAM now weighs both branches' CBAM-refined maps (each keeping its N most active channels), scored by the
    whole model."""
    from classify.scorecam import explain_map, explainer

    size = 64
    _, model = _ensemble_run(tmp_path, "ensemble_cbam", size)
    ex = explainer(model)
    ((_, scorer, features),) = ex.parts
    assert scorer is model and [t.shape[-1] for t in features.outputs] == [1280, 1664]
    assert ex.method == "Score-CAM over both branches' CBAM-refined feature maps (efficientnetv2b0, densenet169)"
    img = np.random.default_rng(0).uniform(0, 255, (size, size, 3)).astype("float32")
    cam, k, probs = explain_map(ex, img, 1, 8)
    assert k == 1 and cam.shape == (size, size) and 0 <= cam.min() and cam.max() <= 1


def test_a_compiled_transfer_vit_reloads_with_its_optimizer_state(tmp_path):
    """A transfer-mode ViT's last.keras lost its Adam state on reload: Keras builds the attention's projections while
    loading, trainable, so the optimizer was built for 198 variables against the file's 6 and skipped them all
    (iterations back to 0: `classify train` could not resume the run). The registry's ViT builder, made small."""
    from classify.models import _vit_b16
    from classify.runs import load_model, save_model

    keras.utils.set_random_seed(0)
    model, _ = _vit_b16(3, 16, False, "transfer", "vit_b16", depth=1, dim=8, heads=2, mlp=16)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3)).astype("float32")
    for _ in range(3):
        model.train_on_batch(x, np.array([0, 1, 2, 0]))
    save_model(model, tmp_path / "last.keras")
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        loaded = load_model(tmp_path / "last.keras", compile=True)
    assert not [w for w in shown if "Skipping variable loading for optimizer" in str(w.message)]
    assert int(keras.ops.convert_to_numpy(loaded.optimizer.iterations)) == 3
    assert len(loaded.trainable_weights) == len(model.trainable_weights) == 2  # the new head only
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


def test_explain_refuses_a_run_whose_feature_maps_are_1x1(tmp_path):
    """A stride-32 backbone trained at --image-size 32 (allowed: its minimum) has 1x1 last feature maps; Score-CAM
    upsamples each to a constant, leaves constants out, and `explain` wrote a blank heat map for every image without a
    word. It now stops before any work with one line naming the run, the map size and the image size that works."""
    from PIL import Image

    from classify.scorecam import explain

    run, _ = _ensemble_run(tmp_path, "efficientnetv2b0", 32)  # any registry model's run, as train saves it
    img = tmp_path / "x.png"
    Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(img)
    with pytest.raises(UserError, match=r"1x1 feature maps at --image-size 32.*--image-size 64") as e:
        explain(run, [img], tmp_path / "cams", max_channels=8, progress=False)
    assert "\n" not in str(e.value) and str(run) in str(e.value)
    assert not (tmp_path / "cams").exists()
