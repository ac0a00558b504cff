"""What a model is: the table every other module reads (Keras-free).

A model of this project is a name, a builder (a function returning an uncompiled two-headed
`keras.Model`) and the facts the rest of the code needs about it: which ImageNet base it has, how
it is trained (stages, on cached features or on images), what it starts from by default and the
runtime defaults measured for it by `agegender bench`. Adding a model is one `ModelSpec` in
`MODELS` (or a `register` call) plus its builder.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

TRAIN, FINE_TUNE = "train", "fine_tune"


@dataclass(frozen=True)
class ModelSpec:
    """One model of the project.

    Attributes:
        name: the name used everywhere (CLI, results folders, chapters).
        builder: the builder, as ``"module:function"`` (imported when first used, so this table
            stays free of Keras) or a callable; it takes ``image_size`` and keyword options.
        summary: how the model learns, in a few words, for tables and captions.
        base: the keras.applications base (``"vgg16"``, ``"resnet50"``), or None.
        stages: the training stages in order: ``"train"``, then ``"fine_tune"`` for a model whose
            second stage unfreezes the top blocks of its base.
        on_features: the heads are trained on features of the frozen base, computed once.
        augments: its chapter trains with augmentation by default.
        cpu_xla_from_size: with TensorFlow on a CPU, the smallest image side at which the
            training step is compiled with XLA (None: never); see `agegender.training.runtime`.
    """

    name: str
    builder: str | Callable
    summary: str
    base: str | None = None
    stages: tuple[str, ...] = (TRAIN,)
    on_features: bool = False
    augments: bool = False
    cpu_xla_from_size: int | None = None

    @property
    def default_weights(self) -> str | None:
        """``"imagenet"`` for a model with an ImageNet base, None (from scratch) otherwise."""
        return "imagenet" if self.base else None

    @property
    def transfer(self) -> bool:
        """True for a model meant to start from pretrained weights."""
        return self.base is not None

    @property
    def fine_tunes(self) -> bool:
        return FINE_TUNE in self.stages

    def build_function(self) -> Callable:
        if callable(self.builder):
            return self.builder
        module, _, function = self.builder.partition(":")
        return getattr(importlib.import_module(module), function)


# XLA with TensorFlow on a CPU, as `agegender bench` measured it on a 2-core CPU (see the
# performance appendix): on for the custom CNN at every size; for ResNet-50 only from 128 px,
# since TensorFlow's own convolutions were faster at 64 px; never measured for the VGG16 heads.
MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "custom_cnn",
            "agegender.models.builders:custom_cnn",
            "a CNN trained from scratch",
            augments=True,
            cpu_xla_from_size=0,
        ),
        ModelSpec(
            "vgg16_features",
            "agegender.models.builders:vgg16_features",
            "VGG16's frozen base as a feature extractor, heads trained on its features",
            base="vgg16",
            on_features=True,
        ),
        ModelSpec(
            "resnet50_finetune",
            "agegender.models.builders:resnet50_finetune",
            "ResNet-50, heads trained, then its top blocks fine-tuned",
            base="resnet50",
            stages=(TRAIN, FINE_TUNE),
            augments=True,
            cpu_xla_from_size=128,
        ),
    )
}


def model_names() -> tuple[str, ...]:
    """The models' names, in the book's order."""
    return tuple(MODELS)


def spec(name: str) -> ModelSpec:
    """The spec of a model name.

    Raises:
        ValueError: an unknown name, listing the known ones.
    """
    if name not in MODELS:
        raise ValueError(f"name must be one of {model_names()}. Received: name={name!r}")
    return MODELS[name]


def register(model: ModelSpec) -> ModelSpec:
    """Add a model to the table (after the others); returns it. `unregister` takes it out."""
    if model.name in MODELS:
        raise ValueError(f"A model named {model.name!r} exists already.")
    unknown = set(model.stages) - {TRAIN, FINE_TUNE}
    if not model.stages or model.stages[0] != TRAIN or unknown:
        raise ValueError(
            f"stages must be ('train',) or ('train', 'fine_tune'). Received: {model.stages!r}"
        )
    if model.fine_tunes and model.base is None:
        raise ValueError("A fine-tuning stage needs a pretrained base. Received: base=None")
    MODELS[model.name] = model
    return model


def unregister(name: str) -> None:
    MODELS.pop(name, None)
