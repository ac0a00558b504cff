"""Age and gender estimation on UTKFace."""

__version__ = "0.1.0"
