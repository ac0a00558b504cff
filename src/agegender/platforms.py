"""Which hosted notebook platform we run on. The only module that knows their folders."""

from __future__ import annotations

import os
from pathlib import Path

KAGGLE_INPUT = Path("/kaggle/input")


def detect() -> str:
    """Return ``"colab"``, ``"kaggle"`` or ``"local"``."""
    if "COLAB_RELEASE_TAG" in os.environ or "COLAB_GPU" in os.environ:
        return "colab"
    if "KAGGLE_KERNEL_RUN_TYPE" in os.environ or KAGGLE_INPUT.is_dir():
        return "kaggle"
    return "local"


def kaggle_input_dir() -> Path | None:
    """Kaggle's folder of attached datasets, when there is one."""
    return KAGGLE_INPUT if KAGGLE_INPUT.is_dir() else None
