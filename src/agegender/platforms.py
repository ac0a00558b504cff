"""Which hosted notebook platform we run on. The only module that knows their folders."""

from __future__ import annotations

import os
from pathlib import Path

KAGGLE_INPUT = Path("/kaggle/input")
# The most used public copy of UTKFace on Kaggle (its UTKFace/ folder is the aligned crops).
KAGGLE_UTKFACE = "kaggle:jangedoo/utkface-new"


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


def default_source() -> str | None:
    """Where UTKFace comes from when nothing is configured: a dataset attached to the Kaggle
    notebook, else (on Colab or Kaggle) the public Kaggle copy through kagglehub; None locally."""
    if (attached := kaggle_input_dir()) is not None and any(attached.iterdir()):
        return str(attached)
    return KAGGLE_UTKFACE if detect() != "local" else None
