"""The project's own Keras layers: augmentation, ImageNet preprocessing and the DEX age.

Only `keras` and `keras.ops` are used, so they run on the TensorFlow, JAX and torch backends, and
each is registered for saving (``.keras`` files load them back).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from agegender.checks import check_rate


@dataclass(frozen=True)
class Augmentation:
    """Training-time augmentation, as Keras preprocessing layers inside the model.

    Each part is switched off by ``False`` or ``0``. The layers only act when the model is called
    with ``training=True`` (that is, in `fit`); prediction sees the images unchanged.

    Attributes:
        flip: random horizontal flips.
        rotation: largest rotation, as a fraction of a full turn (0.05 is 18 degrees).
        zoom: largest zoom in or out, as a fraction of the image side.
        contrast: largest contrast change, as a fraction.
    """

    flip: bool = True
    rotation: float = 0.05
    zoom: float = 0.1
    contrast: float = 0.1

    @classmethod
    def off(cls) -> Augmentation:
        return cls(flip=False, rotation=0.0, zoom=0.0, contrast=0.0)

    def layers(self, seed: int | None = None) -> list[keras.layers.Layer]:
        """The enabled augmentation layers, in order."""
        layers = []
        if self.flip:
            layers.append(keras.layers.RandomFlip("horizontal", seed=seed, name="random_flip"))
        if self.rotation or self.zoom:
            layers.append(RandomAffine(self.rotation, self.zoom, seed=seed, name="random_affine"))
        if self.contrast:
            layers.append(
                keras.layers.RandomContrast(
                    self.contrast, value_range=(0, 255), seed=seed, name="random_contrast"
                )
            )
        return layers


@keras.saving.register_keras_serializable(package="agegender")
class RandomAffine(keras.layers.Layer):
    """Random rotation and zoom about the image centre, in one bilinear resampling.

    It does what Keras' `RandomRotation` and `RandomZoom` do together, with `keras.ops` alone, so
    a model that holds it still compiles with XLA: those two layers declare that they do not
    (``supports_jit = False``), which silently turns XLA off for the whole training step (on
    TensorFlow) or leaves the step uncompiled (on JAX). Pixels sampled from outside the image
    repeat its nearest edge. It acts only in training.

    Args:
        rotation: largest rotation, as a fraction of a full turn (0.05 is 18 degrees).
        zoom: largest zoom in or out, as a fraction of the image side.
        seed: seed of the random draws.
    """

    def __init__(self, rotation: float = 0.0, zoom: float = 0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        check_rate(rotation=rotation, zoom=zoom)
        self.rotation, self.zoom, self.seed = rotation, zoom, seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training:
            return images
        shape = (ops.shape(images)[0], 1, 1)
        turns = keras.random.uniform(shape, -self.rotation, self.rotation, seed=self.generator)
        scales = 1.0 + keras.random.uniform(shape, -self.zoom, self.zoom, seed=self.generator)
        return rotate_and_zoom(images, turns, scales)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "rotation": self.rotation,
            "zoom": self.zoom,
            "seed": self.seed,
        }


def rotate_and_zoom(images, turns, scales):
    """Resample each image rotated by `turns` (fractions of a full turn, anticlockwise) and seen
    through a window `scales` times its side, about its centre (bilinear; edges repeat).

    Args:
        images: (B, H, W, C) floats.
        turns, scales: (B, 1, 1) floats; ``turns=0, scales=1`` returns the images unchanged.
    """
    batch, height, width, channels = ops.shape(images)
    cos, sin = ops.cos(2 * np.pi * turns) * scales, ops.sin(2 * np.pi * turns) * scales
    last_y, last_x = ops.cast(height - 1, "float32"), ops.cast(width - 1, "float32")
    dy = ops.arange(height, dtype="float32")[None, :, None] - last_y / 2
    dx = ops.arange(width, dtype="float32")[None, None, :] - last_x / 2
    source_y = ops.clip(last_y / 2 + cos * dy + sin * dx, 0, last_y)
    source_x = ops.clip(last_x / 2 - sin * dy + cos * dx, 0, last_x)
    y0, x0 = ops.floor(source_y), ops.floor(source_x)
    wy = ops.cast((source_y - y0)[..., None], images.dtype)
    wx = ops.cast((source_x - x0)[..., None], images.dtype)
    y0, x0 = ops.cast(y0, "int32"), ops.cast(x0, "int32")
    y1, x1 = ops.minimum(y0 + 1, height - 1), ops.minimum(x0 + 1, width - 1)
    flat = ops.reshape(images, (batch, height * width, channels))

    def pixels(y, x):
        index = ops.broadcast_to(
            ops.reshape(y * width + x, (batch, height * width, 1)),
            (batch, height * width, channels),
        )
        return ops.reshape(
            ops.take_along_axis(flat, index, axis=1), (batch, height, width, channels)
        )

    top = pixels(y0, x0) * (1 - wx) + pixels(y0, x1) * wx
    bottom = pixels(y1, x0) * (1 - wx) + pixels(y1, x1) * wx
    return top * (1 - wy) + bottom * wy


PREPROCESSORS = {
    "vgg16": keras.applications.vgg16.preprocess_input,
    "resnet50": keras.applications.resnet50.preprocess_input,
}


@keras.saving.register_keras_serializable(package="agegender")
class ImagenetPreprocess(keras.layers.Layer):
    """The `preprocess_input` of a keras.applications family, as a layer (inputs 0-255 RGB)."""

    def __init__(self, family: str, **kwargs):
        super().__init__(**kwargs)
        if family not in PREPROCESSORS:
            raise ValueError(
                f"family must be one of {tuple(PREPROCESSORS)}. Received: family={family!r}"
            )
        self.family = family

    def call(self, inputs):
        return PREPROCESSORS[self.family](inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "family": self.family}


@keras.saving.register_keras_serializable(package="agegender")
class ExpectedAge(keras.layers.Layer):
    """The expected age of a softmax over the ages ``0..bins-1`` (DEX), shape (B, 1)."""

    def call(self, probabilities):
        ages = ops.arange(ops.shape(probabilities)[-1], dtype=probabilities.dtype)
        return ops.sum(probabilities * ages, axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 1)
