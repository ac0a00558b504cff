"""Fine-tuning a keras.applications base: its blocks, and unfreezing the top ones."""

from __future__ import annotations

import re

import keras

from agegender.models.heads import parts
from agegender.models.weights import IMAGENET_FILES

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


def base_of(model: keras.Model) -> keras.Model | None:
    """The keras.applications base inside a model, or None for the custom CNN."""
    extractor, _ = parts(model)
    for layer in extractor.layers:
        if layer.name in IMAGENET_FILES:
            return layer
    return None
