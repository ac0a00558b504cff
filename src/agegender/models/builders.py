"""The builders: a custom CNN, VGG16 features and a fine-tuned ResNet-50, each with two heads.

- The *extractor* holds everything that turns pixels into features: the augmentation layers
  (active in training only), the greyscale-to-RGB repeat and the `preprocess_input` of an ImageNet
  base, and the trunk itself (convolution blocks, or a keras.applications base called with
  ``training=False`` so its batch normalisation always runs in inference mode).
- The *heads* (`agegender.models.heads`) take the features to the outputs ``age`` (years) and
  ``gender`` (probability of "female"), both float32.

`build` makes any model of the table in `agegender.models.specs` by name.
"""

from __future__ import annotations

import inspect
from functools import partial

import keras

from agegender.checks import check_choice, check_positive_int
from agegender.errors import AgegenderError
from agegender.models.heads import assemble, check_head_options, heads
from agegender.models.layers import Augmentation, ImagenetPreprocess
from agegender.models.specs import spec
from agegender.models.weights import IMAGENET_FILES, check_imagenet, resolve_weights


def _image_input(image_size: int, channels: int, augmentation: Augmentation | None, seed):
    images = keras.Input((image_size, image_size, channels), name="image")
    x = images
    for layer in (augmentation or Augmentation.off()).layers(seed):
        x = layer(x)
    return images, x


def custom_cnn(
    *,
    image_size: int,
    channels: int = 3,
    weights=None,
    width: int = 32,
    depth: int = 5,
    convs: int = 1,
    units: int = 128,
    dropout: float = 0.3,
    age_head: str = "regression",
    augmentation: Augmentation | None = None,
    seed: int | None = None,
) -> keras.Model:
    """A CNN trained from scratch: `depth` blocks of `convs` times (conv, batch norm, ReLU), then
    a max-pool.

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
        convs: 3x3 convolutions per block (2 as in VGG; each costs about as much again).
        units, dropout, age_head: see `heads`.
        augmentation: training-time augmentation, or None.
        seed: seed of the augmentation layers.

    Returns:
        An uncompiled `keras.Model` named ``custom_cnn`` with outputs ``age`` and ``gender``.
    """
    _check_custom_cnn(
        image_size=image_size,
        channels=channels,
        width=width,
        depth=depth,
        convs=convs,
        units=units,
        dropout=dropout,
        age_head=age_head,
    )
    info = resolve_weights(weights, base=None)
    if info.kind == "checkpoint":
        return load_checkpoint(info.path)
    images, x = _image_input(image_size, channels, augmentation, seed)
    x = keras.layers.Rescaling(1 / 255, name="scale_0_1")(x)
    for block in range(depth):
        filters = width * 2 ** min(block, 3)
        for conv in range(convs):
            name = f"block{block + 1}" + (f"_{conv + 1}" if conv else "")
            x = keras.layers.Conv2D(
                filters, 3, padding="same", use_bias=False, name=f"{name}_conv"
            )(x)
            # momentum 0.9: the moving statistics settle within a few hundred steps, which short
            # runs on small subsets need (with 0.99, inference-mode outputs lag far behind)
            x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
            x = keras.layers.Activation("relu", name=f"{name}_relu")(x)
        x = keras.layers.MaxPooling2D(2, name=f"block{block + 1}_pool")(x)
    extractor = keras.Model(images, x, name="extractor")
    head_model = heads(
        extractor.output.shape[1:], units=units, dropout=dropout, pooling="avg", age_head=age_head
    )
    model = assemble(extractor, head_model, name="custom_cnn")
    if info.kind == "file":
        model.load_weights(info.path)
    return model


def _check_custom_cnn(*, image_size, channels, width, depth, convs, units, dropout, age_head, **_):
    check_positive_int(image_size=image_size, width=width, depth=depth, convs=convs)
    check_choice(channels=channels, choices=(1, 3))
    check_head_options(units=units, dropout=dropout, pooling="avg", age_head=age_head)
    if image_size < 2**depth:
        raise ValueError(
            f"image_size must be at least 2**depth = {2**depth}. Received: image_size={image_size}"
        )


def _check_base(base, *, image_size, channels):
    check_choice(base=base, choices=tuple(IMAGENET_FILES))
    check_positive_int(image_size=image_size)
    check_choice(channels=channels, choices=(1, 3))
    if image_size < 32:
        raise ValueError(
            f"image_size must be at least 32 for {base}. Received: image_size={image_size}"
        )


def _check_imagenet(base, *, image_size, channels, units, dropout, pooling, age_head, **_):
    _check_base(base, image_size=image_size, channels=channels)
    check_head_options(units=units, dropout=dropout, pooling=pooling, age_head=age_head)


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
    _check_base(base, image_size=image_size, channels=channels)
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
    _check_imagenet(
        base,
        image_size=image_size,
        channels=channels,
        units=units,
        dropout=dropout,
        pooling=pooling,
        age_head=age_head,
    )
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


def build(name: str, *, image_size: int, **options) -> keras.Model:
    """Build a model of the table (`agegender.models.specs.MODELS`) by name.

    Args:
        name: a model name, e.g. ``"custom_cnn"``, ``"vgg16_features"``, ``"resnet50_finetune"``.
        image_size: image side in pixels.
        **options: the builder's keyword arguments, e.g. ``weights``, ``channels``,
            ``age_head``, ``augmentation``. ``weights`` defaults to the spec's
            (`ModelSpec.default_weights`: ImageNet for a model with a base, else None).

    Returns:
        An uncompiled `keras.Model` with the outputs ``age`` and ``gender``.
    """
    model = spec(name)
    options.setdefault("weights", model.default_weights)
    return model.build_function()(image_size=image_size, **options)


# What each builder refuses before it builds anything (a registered model without one gets the
# weights check only).
ARGUMENT_CHECKS = {
    custom_cnn: _check_custom_cnn,
    vgg16_features: partial(_check_imagenet, "vgg16"),
    resnet50_finetune: partial(_check_imagenet, "resnet50"),
}


def check_options(name: str, *, image_size: int, **options) -> None:
    """Refuse what `build` would refuse, without building anything: out-of-range options, a
    weights file that is missing or is not a weights file, and ImageNet weights that are neither
    here nor downloadable (`check_imagenet`; they are downloaded when the model is built).

    Raises:
        ValueError, AgegenderError: as `build` would, with the same messages.
    """
    model = spec(name)
    function = model.build_function()
    options.setdefault("weights", model.default_weights)
    arguments = inspect.signature(function).bind(image_size=image_size, **options)
    arguments.apply_defaults()
    if check := ARGUMENT_CHECKS.get(function):
        check(**arguments.arguments)
    weights = arguments.arguments.get("weights")
    if weights == "imagenet" and model.base:
        check_imagenet(model.base)
    else:
        resolve_weights(weights, base=model.base)


def load_checkpoint(path) -> keras.Model:
    """Load a model saved by this project (``.keras``) as a starting point, uncompiled."""
    model = keras.saving.load_model(path, compile=False)
    names = getattr(model, "output_names", None)
    if names is None or sorted(names) != ["age", "gender"]:
        raise AgegenderError(
            f"{path} is not an age and gender model: its outputs are {names}, not age and gender."
        )
    return model
