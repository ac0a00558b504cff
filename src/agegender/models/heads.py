"""The two heads and how they meet an extractor.

Every model has the same shape, so training, saving and prediction treat them alike::

    image (0-255 floats) -> "extractor" -> "heads" -> {"age": (B, 1), "gender": (B, 1)}

The *heads* are a model of their own, so heads trained on cached features can be put back on
their extractor with `assemble`. The age head is a plain regression or DEX (``age_head="dex"``):
a softmax over the ages 0-100 whose expected value is the ``age`` output; the loss is computed on
that expected value, which keeps every metric in years, and the distribution itself stays
available through `age_distribution_model`.
"""

from __future__ import annotations

import keras

from agegender.checks import check_choice, check_positive_int, check_rate
from agegender.models.layers import ExpectedAge

AGE_HEADS = ("regression", "dex")
POOLINGS = ("avg", "flatten")
DEX_BINS = 101  # ages 0..100, as in DEX (Rothe et al.)
# The regression output is `AGE_OFFSET + AGE_SCALE * dense`, so an untrained model starts near the
# typical UTKFace age and a unit step of the last layer moves the prediction by years, not by a
# fraction of a year (a plain Dense(1) would need thousands of steps to reach the right range).
AGE_OFFSET = 33.0
AGE_SCALE = 10.0


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
    check_head_options(units=units, dropout=dropout, pooling=pooling, age_head=age_head)
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


def parts(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """The ``(extractor, heads)`` of a model made by `build` (or loaded from one)."""
    return model.get_layer("extractor"), model.get_layer("heads")


def age_distribution_model(model: keras.Model) -> keras.Model:
    """A model from images to the DEX age distribution (B, 101) of a ``age_head="dex"`` model."""
    extractor, head_model = parts(model)
    try:
        bins = head_model.get_layer("age_bins").output
    except ValueError:
        raise ValueError("This model has no DEX age head (age_head='dex').") from None
    distribution = keras.Model(head_model.input, bins, name="age_distribution")
    images = keras.Input(extractor.input.shape[1:], name="image")
    return keras.Model(images, distribution(extractor(images)), name=f"{model.name}_age_bins")


def check_head_options(*, units, dropout, pooling, age_head) -> None:
    check_positive_int(units=units)
    check_rate(dropout=dropout)
    check_choice(pooling=pooling, choices=POOLINGS)
    check_choice(age_head=age_head, choices=AGE_HEADS)
