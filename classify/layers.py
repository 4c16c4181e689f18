"""Custom Keras 3 layers (keras.ops only, so they run on the TensorFlow and torch backends).

Importing this module registers them for `keras.saving.load_model`.
"""

from __future__ import annotations

import keras
from keras import layers, ops

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="classify")
class Preprocess(layers.Layer):
    """Maps RGB pixels in 0..255 to what a backbone expects.

    mode: "none" (identity; backbone preprocesses itself), "unit" (/255), "tf" (-1..1),
    "torch" (/255 then ImageNet mean/std), "caffe" (RGB->BGR, minus ImageNet BGR means).
    """

    MODES = ("none", "unit", "tf", "torch", "caffe")

    def __init__(self, mode: str = "none", **kwargs) -> None:
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"unknown preprocessing mode {mode!r}; use one of {self.MODES}")
        self.mode = mode

    def call(self, x):
        x = ops.cast(x, "float32")
        if self.mode == "unit":
            return x / 255.0
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(_IMAGENET_MEAN, "float32")
            std = ops.convert_to_tensor(_IMAGENET_STD, "float32")
            return (x / 255.0 - mean) / std
        if self.mode == "caffe":
            return ops.flip(x, axis=-1) - ops.convert_to_tensor(_CAFFE_MEAN_BGR, "float32")
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="classify")
class CBAM(layers.Layer):
    """Convolutional Block Attention Module (Woo et al. 2018): channel attention, then spatial attention.

    Channel: shared MLP (C -> C/ratio -> C) over global average- and max-pooled features, summed, sigmoid.
    Spatial: 7x7 conv over the channel-wise mean and max maps, sigmoid. Input and output (B, H, W, C).
    """

    def __init__(self, ratio: int = 8, kernel_size: int = 7, **kwargs) -> None:
        super().__init__(**kwargs)
        self.ratio = ratio
        self.kernel_size = kernel_size

    def build(self, input_shape) -> None:
        channels = int(input_shape[-1])
        self.mlp_hidden = layers.Dense(max(1, channels // self.ratio), activation="relu", name="mlp_hidden")
        self.mlp_out = layers.Dense(channels, name="mlp_out")
        self.spatial = layers.Conv2D(1, self.kernel_size, padding="same", activation="sigmoid", name="spatial")
        self.mlp_hidden.build((None, channels))
        self.mlp_out.build((None, max(1, channels // self.ratio)))
        self.spatial.build((None, None, None, 2))

    def call(self, x):
        avg = ops.mean(x, axis=(1, 2))
        mx = ops.max(x, axis=(1, 2))
        channel = ops.sigmoid(self.mlp_out(self.mlp_hidden(avg)) + self.mlp_out(self.mlp_hidden(mx)))
        x = x * channel[:, None, None, :]
        pooled = ops.concatenate([ops.mean(x, axis=-1, keepdims=True), ops.max(x, axis=-1, keepdims=True)], axis=-1)
        return x * self.spatial(pooled)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "ratio": self.ratio, "kernel_size": self.kernel_size}


@keras.saving.register_keras_serializable(package="classify")
class ClassToken(layers.Layer):
    """Prepends a learned class token: (B, N, D) -> (B, N + 1, D)."""

    def build(self, input_shape) -> None:
        self.token = self.add_weight(shape=(1, 1, int(input_shape[-1])), initializer="zeros", name="token")

    def call(self, x):
        token = ops.broadcast_to(ops.cast(self.token, x.dtype), (ops.shape(x)[0], 1, ops.shape(x)[-1]))
        return ops.concatenate([token, x], axis=1)

    def compute_output_shape(self, input_shape):
        n = None if input_shape[1] is None else input_shape[1] + 1
        return (input_shape[0], n, input_shape[2])


@keras.saving.register_keras_serializable(package="classify")
class PositionEmbedding(layers.Layer):
    """Adds a learned position embedding to (B, N, D) tokens."""

    def build(self, input_shape) -> None:
        self.embedding = self.add_weight(
            shape=(1, int(input_shape[1]), int(input_shape[2])),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
            name="embedding",
        )

    def call(self, x):
        return x + ops.cast(self.embedding, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="classify")
class SelectToken(layers.Layer):
    """Takes token `index` of (B, N, D) -> (B, D)."""

    def __init__(self, index: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.index = index

    def call(self, x):
        return x[:, self.index]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])

    def get_config(self) -> dict:
        return {**super().get_config(), "index": self.index}


@keras.saving.register_keras_serializable(package="classify")
class PatchGrid(layers.Layer):
    """ViT tokens (B, 1 + g*g, D) -> patch feature map (B, g, g, D), dropping the class token."""

    def call(self, x):
        n = x.shape[1] - 1
        g = int(round(n**0.5))
        return ops.reshape(x[:, 1:], (-1, g, g, x.shape[-1]))

    def compute_output_shape(self, input_shape):
        g = int(round((input_shape[1] - 1) ** 0.5))
        return (input_shape[0], g, g, input_shape[2])
