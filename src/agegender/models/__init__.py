"""What a model is and how it is built.

- `specs`: the table of models (name, builder, base, stages, defaults); Keras-free.
- `builders`: the builders and `build(name, image_size=..., **options)`.
- `heads`: the two heads and `assemble`; `layers`: the project's Keras layers;
  `weights`: ImageNet and local weights files; `finetune`: unfreezing a base's top blocks;
  `saved`: where a run keeps its trained model, and `load_model`.

``agegender.models.build`` and ``agegender.models.Augmentation`` are here for convenience; they
import Keras when first used, so that importing the Keras-free `specs` does not.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "build": "builders",
    "load_checkpoint": "builders",
    "load_model": "saved",
    "Augmentation": "layers",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"agegender.models.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'agegender.models' has no attribute {name!r}")


def __dir__():
    return sorted((*globals(), *_LAZY))
