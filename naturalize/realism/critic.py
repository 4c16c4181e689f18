"""The critic of the realism test: a small Keras CNN trained to tell two sets of images apart.

In: uint8 images (N, S, S, 3), labels 0 (real) / 1 (the other set), their classes, a seed and
CriticParams. Out: Trial: held-out ROC AUC (scikit-learn) overall and per class, the held-out indices and
scores, and the trained model (for Score-CAM). Backend-neutral Keras 3 (TensorFlow or PyTorch).
AUC 0.5: the critic cannot tell the sets apart; 1.0: it always can.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

import numpy as np

from naturalize.fsio import UserError


@dataclass(frozen=True)
class CriticParams:
    """size: input side (px); epochs, batch, learning_rate: training; widths: filters of the conv blocks
    (the last one is the `features` layer Score-CAM reads); test_fraction: held-out part, stratified by
    label and class; flips: random horizontal and vertical flips while training."""

    size: int = 128
    epochs: int = 30
    batch: int = 32
    learning_rate: float = 1e-3
    widths: tuple[int, ...] = (16, 32, 64)
    test_fraction: float = 0.4
    flips: bool = True

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass
class Trial:
    """One seed of one test: pooled and per-class held-out AUC, held-out indices and scores, the model."""

    auc: float
    per_class: dict[str, float]
    test: np.ndarray
    scores: np.ndarray
    model: object


def keras_or_error():
    """keras, or a UserError saying how to install it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import keras
    except ImportError:
        raise UserError('`naturalize realism` needs Keras: pip install "naturalize[classify]"') from None
    return keras


def build_critic(p: CriticParams, classes: int = 1):
    """The critic: (flips), rescaling, conv blocks (3x3 conv + ReLU, 2x2 max-pool between them; the last
    conv is named `features`), global average pooling, one sigmoid output = P(second set); with classes > 1
    a softmax over that many classes instead (the same network as a small cell classifier)."""
    keras = keras_or_error()
    layers = keras.layers
    inputs = keras.Input((p.size, p.size, 3))
    x = layers.RandomFlip("horizontal_and_vertical")(inputs) if p.flips else inputs
    x = layers.Rescaling(1 / 255)(x)
    for n, width in enumerate(p.widths):
        last = n == len(p.widths) - 1
        x = layers.Conv2D(width, 3, padding="same", activation="relu", name="features" if last else None)(x)
        if not last:
            x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(classes, activation="sigmoid" if classes == 1 else "softmax")(x)
    return keras.Model(inputs, outputs, name="critic")


def critic_features(model):
    """input -> the critic's `features` map (B, h, w, K), for Score-CAM. Built on `model.input`, the one tensor the
    critic takes (not the list `model.inputs`: a model built on that expects a list, and Keras warns "The structure
    of `inputs` doesn't match the expected structure" at every call with one batch)."""
    keras = keras_or_error()
    return keras.Model(model.input, model.get_layer("features").output)


def auc_or_nan(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s)) if len(np.unique(y)) == 2 else float("nan")


def held_out_count(n: int, strata: int, fraction: float) -> int:
    """How many of n images (in `strata` label x class groups of at least 2) the critic is scored on: `fraction` of
    them, but at least one per group and at most all but one per group (a stratified split needs both: 3 classes of
    2 a side held 12 images, 5 to test, and scikit-learn refused 5 for 6 groups)."""
    return min(max(math.ceil(fraction * n), strata), n - strata)


def trial(x: np.ndarray, y: np.ndarray, classes: list[str], seed: int, p: CriticParams) -> Trial:
    """Train a critic on a stratified (label x class) part of x, score the held-out rest (see module doc)."""
    keras = keras_or_error()
    from sklearn.model_selection import train_test_split

    keras.utils.set_random_seed(seed)
    strata = [f"{int(a)}{c}" for a, c in zip(y, classes)]
    train, test = train_test_split(
        np.arange(len(y)),
        test_size=held_out_count(len(y), len(set(strata)), p.test_fraction),
        stratify=strata,
        random_state=seed,
    )
    model = build_critic(p)
    model.compile(optimizer=keras.optimizers.Adam(p.learning_rate), loss="binary_crossentropy")
    model.fit(
        x[train].astype(np.float32),
        y[train].astype(np.float32),
        epochs=p.epochs,
        batch_size=p.batch,
        verbose=0,
        shuffle=True,
    )
    scores = np.asarray(model.predict(x[test].astype(np.float32), batch_size=64, verbose=0)).ravel()
    yt, ct = y[test], np.asarray(classes)[test]
    per_class = {c: round(auc_or_nan(yt[ct == c], scores[ct == c]), 4) for c in dict.fromkeys(classes)}
    return Trial(round(auc_or_nan(yt, scores), 4), per_class, test, scores, model)
