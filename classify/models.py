"""The model registry: `create_model(name, num_classes, weights, mode, image_size)`.

Every model takes RGB float images in 0..255 of shape (S, S, 3) and outputs class probabilities;
its own `Preprocess` layer maps pixels to what the backbone expects. Single-backbone models name the
last convolutional feature map `features` (Score-CAM reads it). Keras 3 API only (no tf.*).

weights: "imagenet" (Keras download), "none" (random init) or a path to a local weights file: for a
single-backbone model it is loaded into the backbone (a Keras `*_notop.h5` file or weights saved from
the same backbone), for `custom_cnn` and the ensembles into the whole model (`Spec.whole_weights`).
mode: "transfer" freezes the backbone (kept in inference mode) and trains a new head; "finetune" trains all.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from naturalize.fsio import UserError

MODES = ("finetune", "transfer")


@dataclass(frozen=True)
class Spec:
    """A registry entry: builder(num_classes, image_size, imagenet, mode) -> (model, backbones), and facts."""

    build: Callable
    keras_imagenet: bool  # Keras can download ImageNet weights for it
    min_size: int
    about: str
    whole_weights: bool = False  # --weights PATH holds the whole model's weights (else its one backbone's)


class ImagenetUnavailable(UserError):
    """Keras could not get the ImageNet weights of `backbone` (offline: `reason`); the message asks for a local
    file of that backbone's weights (create_model rewords it for a model whose --weights PATH is the whole model)."""

    def __init__(self, backbone: str, reason: str):
        self.backbone, self.reason = backbone, reason
        super().__init__(
            f"could not get the ImageNet weights for {backbone} ({reason}); offline, pass --weights PATH "
            f"(a local Keras weights file for this backbone) or --weights none"
        )


def _head(x, num_classes: int, dropout: float = 0.2):
    from keras import layers

    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    return layers.Dense(num_classes, activation="softmax", name="predictions")(x)


def _backbone_call(base, x, mode: str):
    if mode == "transfer":
        base.trainable = False
        return base(x, training=False)
    return base(x)


def _application(factory: str, preprocess: str, **kwargs) -> Callable:
    def build(num_classes: int, image_size: int, imagenet: bool, mode: str, name: str):
        import keras
        from keras import layers

        from classify.layers import Preprocess

        inputs = keras.Input((image_size, image_size, 3), name="image")
        x = Preprocess(preprocess, name="preprocess")(inputs)
        base = _make_application(factory, image_size, imagenet, name, **kwargs)
        feats = layers.Identity(name="features")(_backbone_call(base, x, mode))
        return keras.Model(inputs, _head(feats, num_classes), name=name), [base]

    return build


def _load_failure(e: BaseException) -> str:
    """Why Keras could not load a weights file, in one short line: for its 'A total of N objects could not be
    loaded. Example error message for object <Dense name=predictions, ...>' (the reason on later lines), the layer
    and the two shapes, e.g. 'layer predictions: the model's (128, 7), the file's (128, 5)', or the count and the
    first layer's reason ('6 of the model's layers do not match it, e.g. conv1: Layer 'conv1' expected 2
    variables, but received 0 ...'); else _short(e)."""
    text = str(e)
    layer = re.search(r"Example error message for object <\w+ name=([^,>]+)", text)
    # TensorFlow: "value.shape=(128, 5)"; torch: "value.shape=torch.Size([128, 5])"
    shapes = re.search(r"variable\.shape=(\([^)]*\)), Received: value\.shape=(?:torch\.Size\(\[)?\(?([^)\]]*)", text)
    if layer and shapes:
        return f"layer {layer.group(1)}: the model's {shapes.group(1)}, the file's ({shapes.group(2)})"
    total = re.search(r"A total of (\d+) objects could not be loaded", text)
    if layer and total:  # e.g. "Layer 'conv1' expected 2 variables, but received 0 variables during loading."
        why = next((line.strip() for line in text.splitlines()[1:] if line.strip()), "").split(" Expected:")[0]
        return f"{total.group(1)} of the model's layers do not match it, e.g. {layer.group(1)}: {why}"[:200]
    return _short(e)


def _short(e: BaseException) -> str:
    """One short line from an exception: its last ' -- ' part (URL errors), first line, at most 120 chars."""
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return text.rsplit(" -- ", 1)[-1][:120]


def _make_application(factory: str, image_size: int, imagenet: bool, name: str, **kwargs):
    import keras

    fn = getattr(keras.applications, factory)
    if not imagenet:
        return fn(include_top=False, weights=None, input_shape=(image_size, image_size, 3), **kwargs)
    try:
        return fn(include_top=False, weights="imagenet", input_shape=(image_size, image_size, 3), **kwargs)
    except Exception as e:  # offline: keras.utils.get_file raises a plain Exception("URL fetch failure ...")
        raise ImagenetUnavailable(name, _short(e)) from e


def _custom_cnn(num_classes: int, image_size: int, imagenet: bool, mode: str, name: str):
    """The paper's Figure 9: Conv2D 16/32/64/128 (3x3, same, ReLU) each + 2x2 max pooling, Flatten, Dense 128,
    Dense N."""
    import keras
    from keras import layers

    from classify.layers import Preprocess

    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = Preprocess("unit", name="preprocess")(inputs)
    for i, filters in enumerate((16, 32, 64, 128)):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i + 1}")(x)
        if i == 3:
            x = layers.Identity(name="features")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(128, activation="relu", name="dense")(x)
    out = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, out, name=name), []


def _vit_b16(
    num_classes: int,
    image_size: int,
    imagenet: bool,
    mode: str,
    name: str,
    patch: int = 16,
    depth: int = 12,
    dim: int = 768,
    heads: int = 12,
    mlp: int = 3072,
):
    """ViT-B/16 (Dosovitskiy et al. 2021) from Keras layers: 16x16 patches, 12 pre-norm blocks, 768 dim, 12 heads."""
    import keras
    from keras import layers

    from classify.layers import ClassToken, PositionEmbedding, Preprocess, SelectToken

    if imagenet:
        raise UserError(
            "Keras ships no ImageNet weights for vit_b16; pass --weights PATH (a weights file saved "
            "from this ViT-B/16 backbone) or --weights none"
        )
    if image_size % patch:
        raise UserError(f"vit_b16 needs --image-size divisible by {patch} (got {image_size}); use e.g. 224")
    grid = image_size // patch
    img = keras.Input((image_size, image_size, 3), name="backbone_image")
    t = layers.Conv2D(dim, patch, strides=patch, name="patch_embed")(img)
    t = layers.Reshape((grid * grid, dim), name="tokens")(t)
    t = ClassToken(name="class_token")(t)
    t = PositionEmbedding(name="position_embedding")(t)
    for i in range(depth):
        h = layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_ln1")(t)
        h = layers.MultiHeadAttention(heads, dim // heads, name=f"block{i}_attn")(h, h)
        t = layers.Add(name=f"block{i}_add1")([t, h])
        h = layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_ln2")(t)
        h = layers.Dense(mlp, activation="gelu", name=f"block{i}_mlp1")(h)
        h = layers.Dense(dim, name=f"block{i}_mlp2")(h)
        t = layers.Add(name=f"block{i}_add2")([t, h])
    t = layers.LayerNormalization(epsilon=1e-6, name="encoder_norm")(t)
    base = keras.Model(img, t, name="vit_b16_backbone")

    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = Preprocess("tf", name="preprocess")(inputs)
    tokens = _backbone_call(base, x, mode)
    x = SelectToken(0, name="cls")(tokens)
    out = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, out, name=name), [base]


def _ensemble_average(
    num_classes: int,
    image_size: int,
    imagenet: bool,
    mode: str,
    name: str,
    members: tuple[str, ...] = ("efficientnetv2b0", "densenet169"),
):
    """Mean of the members' softmax outputs; each member is a full registry classifier."""
    import keras
    from keras import layers

    inputs = keras.Input((image_size, image_size, 3), name="image")
    outs, bases = [], []
    for m in members:
        model, b = MODELS[m].build(num_classes, image_size, imagenet, mode, f"member_{m}")
        outs.append(model(inputs))
        bases += b
    out = layers.Average(name="predictions")(outs)
    return keras.Model(inputs, out, name=name), bases


def _ensemble_cbam(num_classes: int, image_size: int, imagenet: bool, mode: str, name: str):
    """EfficientNetV2-B0 and DenseNet-169 feature maps, each through CBAM, pooled, concatenated, MLP head."""
    import keras
    from keras import layers

    from classify.layers import CBAM, Preprocess

    inputs = keras.Input((image_size, image_size, 3), name="image")
    eff = _make_application("EfficientNetV2B0", image_size, imagenet, "efficientnetv2b0")
    dense = _make_application("DenseNet169", image_size, imagenet, "densenet169")
    f1 = _backbone_call(eff, inputs, mode)  # EfficientNetV2 preprocesses its own 0..255 input
    f2 = _backbone_call(dense, Preprocess("torch", name="preprocess_densenet")(inputs), mode)
    f1 = layers.Identity(name="features")(CBAM(name="cbam_efficientnet")(f1))
    f2 = CBAM(name="cbam_densenet")(f2)
    x = layers.Concatenate(name="concat")(
        [
            layers.GlobalAveragePooling2D(name="pool_efficientnet")(f1),
            layers.GlobalAveragePooling2D(name="pool_densenet")(f2),
        ]
    )
    x = layers.Dense(256, activation="relu", name="mlp")(x)
    x = layers.Dropout(0.3, name="dropout")(x)
    out = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, out, name=name), [eff, dense]


MODELS: dict[str, Spec] = {
    "convnext_base": Spec(_application("ConvNeXtBase", "none"), True, 32, "ConvNeXt-Base (Keras applications)"),
    "densenet121": Spec(_application("DenseNet121", "torch"), True, 32, "DenseNet-121 (Keras applications)"),
    "densenet169": Spec(_application("DenseNet169", "torch"), True, 32, "DenseNet-169 (Keras applications)"),
    "densenet201": Spec(_application("DenseNet201", "torch"), True, 32, "DenseNet-201 (Keras applications)"),
    "efficientnetv2b0": Spec(
        _application("EfficientNetV2B0", "none"), True, 32, "EfficientNetV2-B0 (Keras applications)"
    ),
    "vgg19": Spec(_application("VGG19", "caffe"), True, 32, "VGG-19 (Keras applications)"),
    "vit_b16": Spec(_vit_b16, False, 16, "ViT-B/16 written with Keras layers (no Keras ImageNet weights)"),
    "custom_cnn": Spec(
        _custom_cnn, False, 16, "the paper's Figure 9 CNN (3,310,251 parameters at 224x224, 11 classes)", True
    ),
    "ensemble_average": Spec(_ensemble_average, True, 32, "mean of EfficientNetV2-B0 and DenseNet-169 softmaxes", True),
    "ensemble_cbam": Spec(
        _ensemble_cbam, True, 32, "EfficientNetV2-B0 + DenseNet-169 features, CBAM each, MLP head", True
    ),
}


def default_weights(name: str) -> str:
    """The --weights a model trains from by default: "imagenet" where Keras has ImageNet weights for it (the
    paper fine-tunes from ImageNet), "none" for the others (custom_cnn, vit_b16)."""
    return "imagenet" if check_name(name).keras_imagenet else "none"


def check_name(name: str) -> Spec:
    """The registry entry for `name`, or a UserError listing the valid names."""
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}; use one of {', '.join(MODELS)}")
    return MODELS[name]


def check_mode(name: str, mode: str, weights: str | os.PathLike | None) -> None:
    """UserError for an unknown mode, or for --mode transfer without pretrained weights: custom_cnn has no
    backbone, and a frozen backbone of --weights none (vit_b16's default) is random, so only its head would learn.
    `weights` is the resolved value ("imagenet", "none"/None or a PATH, which is allowed)."""
    if mode not in MODES:
        raise UserError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    if mode != "transfer":
        return
    if name == "custom_cnn":
        raise UserError("custom_cnn has no pretrained backbone to freeze; use --mode finetune")
    if weights is None or str(weights) == "none":
        fix = (
            "--weights imagenet or --weights PATH (a weights file)"
            if MODELS[name].keras_imagenet
            else ("--weights PATH (a weights file; Keras has no ImageNet weights for it)")
        )
        raise UserError(
            f"--mode transfer freezes the {name} backbone, but its weights are none (random): only the head would "
            f"learn; pass {fix}, or use --mode finetune"
        )


def create_model(
    name: str,
    num_classes: int,
    weights: str | os.PathLike | None = "none",
    mode: str = "finetune",
    image_size: int = 224,
):
    """Build registry model `name` -> an uncompiled keras.Model (see module doc for weights and mode)."""
    spec = check_name(name)
    check_mode(name, mode, weights)
    if image_size < spec.min_size:
        raise UserError(f"{name} needs --image-size >= {spec.min_size} (got {image_size})")
    w = "none" if weights is None else str(weights)
    path = None
    if w not in ("imagenet", "none"):
        path = Path(w)
        if not path.is_file():
            raise UserError(f"--weights {w!r} is neither 'imagenet', 'none' nor an existing weights file")
    if w == "imagenet" and not spec.keras_imagenet:
        if name == "custom_cnn":
            raise UserError("custom_cnn has no ImageNet weights; use --weights none or --weights PATH")
    try:
        model, bases = spec.build(num_classes, image_size, w == "imagenet", mode, name)
    except ImagenetUnavailable as e:
        if not spec.whole_weights:
            raise
        member = e.backbone.removeprefix("member_")
        raise UserError(
            f"could not get the ImageNet weights for {name} (its {member} member: {e.reason}); offline, pass "
            f"--weights PATH (weights of the whole {name} model with the same classes and image size: a .weights.h5 "
            f"file from model.save_weights(...) or a .keras file such as a run's model.keras) or --weights none"
        ) from e
    if path is not None:
        target = model if spec.whole_weights else bases[0]
        try:
            load_weights_quietly(target, path)
        except Exception as e:
            what = f"the {target.name} backbone" if target is not model else f"the whole {name} model"
            raise UserError(
                f"cannot load weights {path} into {what} ({_load_failure(e)}); "
                f"the file must come from the same architecture, image size and number of classes"
            ) from e
    return model


def load_weights_quietly(model, path: Path) -> None:
    """model.load_weights(path), holding back the Python warnings Keras gives while it tries: a file that does not
    fit makes Keras warn "Skipping nested container ..." once per nested block (up to ~490 lines for an ensemble)
    before it raises, and that failure becomes our one error line instead. When loading succeeds the warnings are
    shown as usual. Only Python warnings of this one call are held; nothing else (TensorFlow's own stderr) is."""
    with warnings.catch_warnings(record=True) as held:
        model.load_weights(str(path))  # raising: the held warnings describe the same failure, and are dropped
    for w in held:
        warnings.showwarning(w.message, w.category, w.filename, w.lineno, w.file, w.line)


def backbone_of(model):
    """The nested backbone model(s) of a built registry model (for freezing or saving their weights)."""
    import keras

    return [layer for layer in model.layers if isinstance(layer, keras.Model)]
