"""Model builders: a custom CNN, VGG16 features and a fine-tuned ResNet-50, each with two heads.

Every model has the same shape, so training, saving and prediction treat them alike::

    image (0-255 floats) -> "extractor" -> "heads" -> {"age": (B, 1), "gender": (B, 1)}

- The *extractor* holds everything that turns pixels into features: the augmentation layers
  (active in training only), the greyscale-to-RGB repeat and the `preprocess_input` of an ImageNet
  base, and the trunk itself (convolution blocks, or a keras.applications base called with
  ``training=False`` so its batch normalisation always runs in inference mode).
- The *heads* take the features to the two named outputs: ``age`` (years, float32) and ``gender``
  (probability of "female", float32). They are a model of their own, so the VGG16 heads can be
  trained on cached features and then put back on their base with `assemble`.

The age head is either a plain regression or DEX (``age_head="dex"``): a softmax over the ages
0-100 whose expected value is the ``age`` output. The loss is then computed on that expected value
(the same per-head loss as the regression), which is differentiable and keeps every metric in
years; the distribution itself stays available through `age_distribution_model`.

Only `keras` and `keras.ops` are used, so the models run on the TensorFlow, JAX and torch backends.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np
from keras import ops

from agegender.errors import AgegenderError
from agegender.files import write_json_atomic

MODEL_NAMES = ("custom_cnn", "vgg16_features", "resnet50_finetune")
AGE_HEADS = ("regression", "dex")
POOLINGS = ("avg", "flatten")
DEX_BINS = 101  # ages 0..100, as in DEX (Rothe et al.)
# The regression output is `AGE_OFFSET + AGE_SCALE * dense`, so an untrained model starts near the
# typical UTKFace age and a unit step of the last layer moves the prediction by years, not by a
# fraction of a year (a plain Dense(1) would need thousands of steps to reach the right range).
AGE_OFFSET = 33.0
AGE_SCALE = 10.0


@dataclass(frozen=True)
class ImagenetFile:
    """A keras.applications ImageNet weights file ("notop": without the classifier)."""

    base: str
    file: str
    md5: str
    url: str


IMAGENET_FILES = {
    "vgg16": ImagenetFile(
        "vgg16",
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "6d6bbae143d832006294945121d1f1fc",
        "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    "resnet50": ImagenetFile(
        "resnet50",
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "4d473c1dd8becc155b73f8504c6f6626",
        "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
}
DOWNLOAD_TIMEOUT_S = 30  # per network operation, so an unreachable host fails instead of hanging


@dataclass(frozen=True)
class WeightsInfo:
    """Which initial weights a model got, for the provenance card.

    Attributes:
        kind: ``"none"`` (random initialisation), ``"imagenet"``, ``"file"`` (a weights file for
            the base, or for the whole custom CNN) or ``"checkpoint"`` (a saved ``.keras`` model).
        path: the file that was loaded, when there is one.
        md5: its md5 (the checksum keras.applications publishes for the ImageNet files).
    """

    kind: str
    path: str | None = None
    md5: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


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
        _check_rate(rotation=rotation, zoom=zoom)
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


# --- weights -----------------------------------------------------------------------------------


def keras_home() -> Path:
    """Keras' folder (``$KERAS_HOME``, else ``~/.keras``), read now rather than at import."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser()


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_weights(weights, *, base: str | None = None, download: bool = True) -> WeightsInfo:
    """Find the file behind a ``weights`` argument, fetching ImageNet weights when needed.

    ImageNet weights are the keras.applications files: they are looked for in
    ``$KERAS_HOME/models/`` first (checked against their md5) and downloaded there only when
    missing and `download` is true.

    Args:
        weights: ``None``, ``"imagenet"``, a path to a weights file (``.h5``/``.weights.h5``) or to
            a saved model (``.keras``), or an already resolved `WeightsInfo` (returned as is).
        base: the ImageNet base (``"vgg16"`` or ``"resnet50"``), or None for a model without one.
        download: allow downloading a missing ImageNet file.

    Returns:
        The `WeightsInfo` to build with and to record.

    Raises:
        AgegenderError: a missing file, or ImageNet weights that are neither in
            ``$KERAS_HOME/models/`` nor downloadable; the message says which file to put where.
    """
    if base is not None and base not in IMAGENET_FILES:
        raise ValueError(
            f"base must be one of {tuple(IMAGENET_FILES)} or None. Received: base={base!r}"
        )
    if weights is None or isinstance(weights, WeightsInfo):
        return weights or WeightsInfo("none")
    if weights == "imagenet":
        if base is None:
            raise ValueError(
                "This model has no ImageNet weights; use None or a weights file. "
                "Received: weights='imagenet'"
            )
        return _imagenet_weights(IMAGENET_FILES[base], download=download)
    if not isinstance(weights, str | os.PathLike):
        raise ValueError(
            f"weights must be None, 'imagenet' or a path. Received: weights={weights!r}"
        )
    path = Path(weights)
    if not path.name.endswith((".h5", ".keras")):
        raise ValueError(
            "A weights file must end in .h5, .weights.h5 or .keras. "
            f"Received: weights={str(weights)!r}"
        )
    if not path.is_file():
        raise AgegenderError(f"Weights file not found: {path}")
    kind = "checkpoint" if path.suffix == ".keras" else "file"
    return WeightsInfo(kind, str(path.resolve()), file_md5(path))


def _imagenet_weights(spec: ImagenetFile, *, download: bool) -> WeightsInfo:
    folder = keras_home() / "models"
    path = folder / spec.file
    how_to = (
        f"Download {spec.file} (md5 {spec.md5}) from {spec.url} and place it at {path} "
        f"(set $KERAS_HOME to use another folder than {keras_home()}), "
        "or use weights=None (random initialisation) or a local weights file."
    )
    if path.is_file():
        if file_md5(path) != spec.md5:
            raise AgegenderError(
                f"{path} is damaged or not the expected file: its md5 is not {spec.md5}. {how_to}"
            )
        return WeightsInfo("imagenet", str(path), spec.md5)
    if not download:
        raise AgegenderError(f"ImageNet weights for {spec.base} are not on this machine. {how_to}")
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        fetched = keras.utils.get_file(
            spec.file,
            spec.url,
            file_hash=spec.md5,
            cache_subdir="models",
            cache_dir=str(keras_home()),
        )
    except Exception as error:  # any network or checksum failure: explain what to do instead
        raise AgegenderError(
            f"ImageNet weights for {spec.base} could not be downloaded "
            f"({type(error).__name__}: {error}). {how_to}"
        ) from None
    finally:
        socket.setdefaulttimeout(previous_timeout)
    return WeightsInfo("imagenet", str(fetched), spec.md5)


# --- building blocks ---------------------------------------------------------------------------


def heads(
    feature_shape,
    *,
    units: int = 128,
    dropout: float = 0.3,
    pooling: str = "avg",
    age_head: str = "regression",
    name: str = "heads",
) -> keras.Model:
    """Separate age and gender branches on a feature map or vector.

    Each branch is pooling, ``Dense(units, relu)``, ``Dropout(dropout)`` and its output layer.

    Args:
        feature_shape: shape of one feature map or vector, without the batch axis.
        units: width of each branch's hidden dense layer.
        dropout: dropout rate after that layer.
        pooling: ``"avg"`` (global average) or ``"flatten"``; ignored for vectors.
        age_head: ``"regression"`` (one unit) or ``"dex"`` (softmax over 0-100, expected value).
        name: the model's name.

    Returns:
        An uncompiled `keras.Model` from features to ``{"age": (B, 1), "gender": (B, 1)}``.
    """
    _check_head_options(units=units, dropout=dropout, pooling=pooling, age_head=age_head)
    features = keras.Input(tuple(feature_shape), name="features")
    x = features
    if len(feature_shape) == 3:
        pool = keras.layers.GlobalAveragePooling2D if pooling == "avg" else keras.layers.Flatten
        x = pool(name=f"{pooling}_pool")(x)
    outputs = {}
    for task in ("age", "gender"):
        h = keras.layers.Dense(units, activation="relu", name=f"{task}_dense")(x)
        h = keras.layers.Dropout(dropout, name=f"{task}_dropout")(h)
        outputs[task] = (
            _age_output(h, age_head)
            if task == "age"
            else keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="gender")(h)
        )
    return keras.Model(features, outputs, name=name)


def _age_output(x, age_head: str):
    if age_head == "dex":
        bins = keras.layers.Dense(DEX_BINS, activation="softmax", dtype="float32", name="age_bins")(
            x
        )
        return ExpectedAge(dtype="float32", name="age")(bins)
    x = keras.layers.Dense(1, dtype="float32", name="age_linear")(x)
    return keras.layers.Rescaling(AGE_SCALE, offset=AGE_OFFSET, dtype="float32", name="age")(x)


def assemble(extractor: keras.Model, head_model: keras.Model, *, name: str) -> keras.Model:
    """Put heads on an extractor: one model from images to ``{"age", "gender"}``.

    The layers are shared, not copied: heads trained on cached features and then assembled
    predict from images with the very same weights.
    """
    images = keras.Input(extractor.input.shape[1:], name="image")
    outputs = head_model(extractor(images))
    named = {
        task: keras.layers.Identity(dtype="float32", name=task)(outputs[task])
        for task in ("age", "gender")
    }
    return keras.Model(images, named, name=name)


def split(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """The ``(extractor, heads)`` of a model made by `build` (or loaded from one)."""
    return model.get_layer("extractor"), model.get_layer("heads")


def base_of(model: keras.Model) -> keras.Model | None:
    """The keras.applications base inside a model, or None for the custom CNN."""
    extractor, _ = split(model)
    for layer in extractor.layers:
        if layer.name in IMAGENET_FILES:
            return layer
    return None


def age_distribution_model(model: keras.Model) -> keras.Model:
    """A model from images to the DEX age distribution (B, 101) of a ``age_head="dex"`` model."""
    extractor, head_model = split(model)
    try:
        bins = head_model.get_layer("age_bins").output
    except ValueError:
        raise ValueError("This model has no DEX age head (age_head='dex').") from None
    distribution = keras.Model(head_model.input, bins, name="age_distribution")
    images = keras.Input(extractor.input.shape[1:], name="image")
    return keras.Model(images, distribution(extractor(images)), name=f"{model.name}_age_bins")


def _image_input(image_size: int, channels: int, augmentation: Augmentation | None, seed):
    images = keras.Input((image_size, image_size, channels), name="image")
    x = images
    for layer in (augmentation or Augmentation.off()).layers(seed):
        x = layer(x)
    return images, x


# --- builders ----------------------------------------------------------------------------------


def custom_cnn(
    *,
    image_size: int,
    channels: int = 3,
    weights=None,
    width: int = 32,
    depth: int = 5,
    units: int = 128,
    dropout: float = 0.3,
    age_head: str = "regression",
    augmentation: Augmentation | None = None,
    seed: int | None = None,
) -> keras.Model:
    """A CNN trained from scratch: `depth` blocks of conv, batch norm, ReLU and max-pool.

    Block ``i`` has ``width * 2**i`` filters, at most ``8 * width``; the defaults give about 1M
    parameters (the trunk ends in global average pooling, so the count does not depend on the
    image size).

    Args:
        image_size: image side in pixels; at least ``2**depth``.
        channels: 3 for RGB, 1 for greyscale.
        weights: None, or a ``.weights.h5`` file of this very architecture, or a ``.keras`` model
            to start from (returned as loaded), or a `WeightsInfo`.
        width: filters of the first block.
        depth: number of convolution blocks.
        units, dropout, age_head: see `heads`.
        augmentation: training-time augmentation, or None.
        seed: seed of the augmentation layers.

    Returns:
        An uncompiled `keras.Model` named ``custom_cnn`` with outputs ``age`` and ``gender``.
    """
    _check_positive_int(image_size=image_size, width=width, depth=depth)
    _check_choice(channels=channels, choices=(1, 3))
    _check_head_options(units=units, dropout=dropout, pooling="avg", age_head=age_head)
    if image_size < 2**depth:
        raise ValueError(
            f"image_size must be at least 2**depth = {2**depth}. Received: image_size={image_size}"
        )
    info = resolve_weights(weights, base=None)
    if info.kind == "checkpoint":
        return load_checkpoint(info.path)
    images, x = _image_input(image_size, channels, augmentation, seed)
    x = keras.layers.Rescaling(1 / 255, name="scale_0_1")(x)
    for block in range(depth):
        filters = width * 2 ** min(block, 3)
        x = keras.layers.Conv2D(
            filters, 3, padding="same", use_bias=False, name=f"block{block + 1}_conv"
        )(x)
        # momentum 0.9: the moving statistics settle within a few hundred steps, which short
        # runs on small subsets need (with 0.99, inference-mode outputs lag far behind)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"block{block + 1}_bn")(x)
        x = keras.layers.Activation("relu", name=f"block{block + 1}_relu")(x)
        x = keras.layers.MaxPooling2D(2, name=f"block{block + 1}_pool")(x)
    extractor = keras.Model(images, x, name="extractor")
    head_model = heads(
        extractor.output.shape[1:], units=units, dropout=dropout, pooling="avg", age_head=age_head
    )
    model = assemble(extractor, head_model, name="custom_cnn")
    if info.kind == "file":
        model.load_weights(info.path)
    return model


def imagenet_extractor(
    base: str,
    *,
    image_size: int,
    channels: int = 3,
    weights="imagenet",
    augmentation: Augmentation | None = None,
    seed: int | None = None,
) -> keras.Model:
    """A frozen keras.applications base (no top) behind its own `preprocess_input`.

    Inputs are 0-255 floats; greyscale is repeated to three channels; the base is called with
    ``training=False`` and frozen, so its batch normalisation stays in inference mode.

    Args:
        base: ``"vgg16"`` or ``"resnet50"``.
        image_size: image side in pixels, at least 32.
        channels: 3 for RGB, 1 for greyscale.
        weights: None, ``"imagenet"``, a weights file of the base, or a `WeightsInfo`.
        augmentation, seed: training-time augmentation and its seed.

    Returns:
        An uncompiled `keras.Model` named ``extractor`` whose output is the base's feature map.
    """
    _check_choice(base=base, choices=tuple(IMAGENET_FILES))
    _check_positive_int(image_size=image_size)
    _check_choice(channels=channels, choices=(1, 3))
    if image_size < 32:
        raise ValueError(
            f"image_size must be at least 32 for {base}. Received: image_size={image_size}"
        )
    info = resolve_weights(weights, base=base)
    if info.kind == "checkpoint":
        raise ValueError(
            f"An extractor takes base weights, not a saved model. Received: weights={info.path!r}"
        )
    application = {"vgg16": keras.applications.VGG16, "resnet50": keras.applications.ResNet50}[base]
    base_model = application(
        include_top=False, weights=info.path, input_shape=(image_size, image_size, 3), name=base
    )
    base_model.trainable = False
    images, x = _image_input(image_size, channels, augmentation, seed)
    if channels == 1:
        x = keras.layers.Concatenate(name="grey_to_rgb")([x, x, x])
    x = ImagenetPreprocess(base, name=f"{base}_preprocess")(x)
    x = base_model(x, training=False)
    return keras.Model(images, x, name="extractor")


def _imagenet_model(
    name: str,
    base: str,
    *,
    image_size,
    channels,
    weights,
    units,
    dropout,
    pooling,
    age_head,
    augmentation,
    seed,
) -> keras.Model:
    _check_head_options(units=units, dropout=dropout, pooling=pooling, age_head=age_head)
    info = resolve_weights(weights, base=base)
    if info.kind == "checkpoint":
        return load_checkpoint(info.path)
    extractor = imagenet_extractor(
        base,
        image_size=image_size,
        channels=channels,
        weights=info,
        augmentation=augmentation,
        seed=seed,
    )
    head_model = heads(
        extractor.output.shape[1:], units=units, dropout=dropout, pooling=pooling, age_head=age_head
    )
    return assemble(extractor, head_model, name=name)


def vgg16_features(
    *,
    image_size: int,
    channels: int = 3,
    weights="imagenet",
    units: int = 256,
    dropout: float = 0.5,
    pooling: str = "flatten",
    age_head: str = "regression",
    augmentation: Augmentation | None = None,
    seed: int | None = None,
) -> keras.Model:
    """VGG16's frozen convolutional base as a feature extractor, with trainable heads.

    Training fits only the heads, on features computed once (`extract_features`); the returned
    end-to-end model predicts from images with the same layers.

    Args:
        image_size: image side in pixels, at least 32.
        channels: 3 for RGB, 1 for greyscale (repeated to RGB).
        weights: ``"imagenet"``, None, a weights file of the VGG16 base, a ``.keras`` model of this
            kind to start from (returned as loaded), or a `WeightsInfo`.
        units, dropout, pooling, age_head: see `heads`.
        augmentation, seed: training-time augmentation (not used on cached features).

    Returns:
        An uncompiled `keras.Model` named ``vgg16_features`` with outputs ``age`` and ``gender``.
    """
    return _imagenet_model(
        "vgg16_features",
        "vgg16",
        image_size=image_size,
        channels=channels,
        weights=weights,
        units=units,
        dropout=dropout,
        pooling=pooling,
        age_head=age_head,
        augmentation=augmentation,
        seed=seed,
    )


def resnet50_finetune(
    *,
    image_size: int,
    channels: int = 3,
    weights="imagenet",
    units: int = 256,
    dropout: float = 0.3,
    pooling: str = "avg",
    age_head: str = "regression",
    augmentation: Augmentation | None = None,
    seed: int | None = None,
) -> keras.Model:
    """ResNet-50 with heads, built for the first stage: base frozen, heads trainable.

    The second stage unfreezes the top residual blocks with `unfreeze_top_blocks`.

    Args:
        image_size: image side in pixels, at least 32.
        channels: 3 for RGB, 1 for greyscale (repeated to RGB).
        weights: ``"imagenet"``, None, a weights file of the ResNet-50 base, a ``.keras`` model to
            start from (returned as loaded, e.g. for a further fine-tuning stage), or a
            `WeightsInfo`.
        units, dropout, pooling, age_head: see `heads`.
        augmentation, seed: training-time augmentation and its seed.

    Returns:
        An uncompiled `keras.Model` named ``resnet50_finetune`` with outputs ``age`` and ``gender``.
    """
    return _imagenet_model(
        "resnet50_finetune",
        "resnet50",
        image_size=image_size,
        channels=channels,
        weights=weights,
        units=units,
        dropout=dropout,
        pooling=pooling,
        age_head=age_head,
        augmentation=augmentation,
        seed=seed,
    )


BUILDERS = {
    "custom_cnn": custom_cnn,
    "vgg16_features": vgg16_features,
    "resnet50_finetune": resnet50_finetune,
}


def build(name: str, *, image_size: int, **options) -> keras.Model:
    """Build one of the project's models by name.

    Args:
        name: ``"custom_cnn"``, ``"vgg16_features"`` or ``"resnet50_finetune"``.
        image_size: image side in pixels.
        **options: the builder's keyword arguments (`custom_cnn`, `vgg16_features`,
            `resnet50_finetune`), e.g. ``weights``, ``channels``, ``age_head``, ``augmentation``.
            ``weights`` defaults to ``"imagenet"`` for the transfer models and None for the CNN.

    Returns:
        An uncompiled `keras.Model` with the outputs ``age`` and ``gender``.
    """
    _check_choice(name=name, choices=MODEL_NAMES)
    return BUILDERS[name](image_size=image_size, **options)


def imagenet_base_name(name: str) -> str | None:
    """The keras.applications base of a model name (``"vgg16"``, ``"resnet50"``), or None."""
    _check_choice(name=name, choices=MODEL_NAMES)
    return {"vgg16_features": "vgg16", "resnet50_finetune": "resnet50"}.get(name)


def load_checkpoint(path) -> keras.Model:
    """Load a model saved by this project (``.keras``) as a starting point, uncompiled."""
    model = keras.saving.load_model(path, compile=False)
    names = getattr(model, "output_names", None)
    if names is None or sorted(names) != ["age", "gender"]:
        raise AgegenderError(
            f"{path} is not an age and gender model: its outputs are {names}, not age and gender."
        )
    return model


# --- fine-tuning -------------------------------------------------------------------------------

_BLOCK = re.compile(r"^(conv\d_block\d+|block\d+)_")  # ResNet residual blocks; VGG conv blocks


def base_blocks(base: keras.Model) -> list[str]:
    """The base's blocks in order, e.g. ``conv2_block1`` .. ``conv5_block3`` for ResNet-50."""
    blocks = []
    for layer in base.layers:
        match = _BLOCK.match(layer.name)
        if match and match.group(1) not in blocks:
            blocks.append(match.group(1))
    return blocks


def unfreeze_top_blocks(model: keras.Model, blocks: int) -> list[str]:
    """Make the top `blocks` blocks of the model's base trainable, batch norm excepted.

    Batch normalisation layers stay frozen (and the base is called with ``training=False``), so
    their statistics are never updated by the small fine-tuning batches. Compile again afterwards.

    Args:
        model: a model with a keras.applications base (`base_of`).
        blocks: how many blocks, counted from the top (ResNet-50 has 16 residual blocks).

    Returns:
        The names of the layers now trainable.
    """
    base = base_of(model)
    if base is None:
        raise ValueError(f"Model {model.name!r} has no pretrained base to fine-tune.")
    names = base_blocks(base)
    if not isinstance(blocks, int) or not 0 <= blocks <= len(names):
        raise ValueError(
            f"blocks must be an integer from 0 to {len(names)}. Received: blocks={blocks!r}"
        )
    top = set(names[len(names) - blocks :])
    base.trainable = True
    unfrozen = []
    for layer in base.layers:
        match = _BLOCK.match(layer.name)
        layer.trainable = bool(
            match
            and match.group(1) in top
            and not isinstance(layer, keras.layers.BatchNormalization)
        )
        if layer.trainable and layer.weights:
            unfrozen.append(layer.name)
    return unfrozen


# --- cached features ---------------------------------------------------------------------------


def features_key(extractor: keras.Model, loader) -> str:
    """A sha256 naming what `extract_features` computes: the extractor's weights and input shape,
    and the loader's images (its rows and file names, or the pixels when it has no names)."""
    digest = hashlib.sha256(b"agegender-features-v1")
    digest.update(repr(tuple(extractor.input.shape[1:])).encode())
    for variable in extractor.weights:
        if "seed_generator" not in variable.path:  # augmentation state: changes, irrelevant
            digest.update(variable.path.encode())
            digest.update(np.ascontiguousarray(ops.convert_to_numpy(variable)).tobytes())
    digest.update(repr(loader.images.shape[1:]).encode())
    digest.update(np.asarray(loader.rows, dtype=np.int64).tobytes())
    if loader.files is not None:
        digest.update("\n".join(map(str, loader.files)).encode())
    else:
        digest.update(np.ascontiguousarray(loader.images[np.sort(loader.rows)]).tobytes())
    return digest.hexdigest()


def extract_features(
    extractor: keras.Model, loader, cache_dir, *, verbose: int = 1
) -> tuple[np.ndarray, float]:
    """The extractor's features for every image of a loader, computed once and cached on disk.

    The cache file is named by `features_key`, so a different split, subset, image size or set of
    weights gets its own file; it is written under a temporary name and renamed when complete. The
    seconds the extraction took are kept beside it (``.json``), so a run that reuses the cache
    still reports what the features cost.

    Args:
        extractor: a feature extractor, e.g. ``split(model)[0]``.
        loader: a `FaceBatches`; its batches are read in its unshuffled row order.
        cache_dir: folder of the cached ``.npy`` files.
        verbose: show a progress bar when computing.

    Returns:
        A read-only memory-mapped float32 array (N, *feature_shape), in the loader's row order,
        and the seconds its extraction took (None for a cache made before they were recorded).
    """
    cache_dir = Path(cache_dir)
    path = cache_dir / f"features-{features_key(extractor, loader)[:24]}.npy"
    record = path.with_suffix(".json")
    if path.is_file():
        seconds = json.loads(record.read_text())["seconds"] if record.is_file() else None
        return np.load(path, mmap_mode="r"), seconds
    if getattr(loader, "shuffle", False):
        raise ValueError("Features must be extracted in row order. Received a shuffled loader.")
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npy")
    shape = (len(loader.rows), *extractor.output.shape[1:])
    features = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
    progress = keras.utils.Progbar(len(loader), verbose=verbose, unit_name="batch")
    started, start = time.perf_counter(), 0
    for index in range(len(loader)):
        images, _ = loader[index]
        batch = np.asarray(extractor.predict_on_batch(images))
        features[start : start + len(batch)] = batch
        start += len(batch)
        progress.update(index + 1)
    features.flush()
    del features
    seconds = round(time.perf_counter() - started, 3)
    write_json_atomic(record, {"seconds": seconds, "images": shape[0]})
    os.replace(tmp, path)
    return np.load(path, mmap_mode="r"), seconds


# --- argument checks ---------------------------------------------------------------------------


def _check_head_options(*, units, dropout, pooling, age_head) -> None:
    _check_positive_int(units=units)
    _check_rate(dropout=dropout)
    _check_choice(pooling=pooling, choices=POOLINGS)
    _check_choice(age_head=age_head, choices=AGE_HEADS)


def _check_positive_int(**values) -> None:
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a positive integer. Received: {key}={value!r}")


def _check_rate(**values) -> None:
    for key, value in values.items():
        if not isinstance(value, int | float) or not 0 <= value < 1:
            raise ValueError(f"{key} must be a number in [0, 1). Received: {key}={value!r}")


def _check_choice(*, choices, **values) -> None:
    for key, value in values.items():
        if value not in choices:
            raise ValueError(f"{key} must be one of {choices}. Received: {key}={value!r}")
