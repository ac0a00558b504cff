"""Argument checks shared by the builders and the training code, with Keras-style messages."""

from __future__ import annotations


def check_positive_int(**values) -> None:
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a positive integer. Received: {key}={value!r}")


def check_non_negative_int(**values) -> None:
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{key} must be a non-negative integer. Received: {key}={value!r}")


def check_rate(**values) -> None:
    for key, value in values.items():
        if not isinstance(value, int | float) or not 0 <= value < 1:
            raise ValueError(f"{key} must be a number in [0, 1). Received: {key}={value!r}")


def check_choice(*, choices, **values) -> None:
    for key, value in values.items():
        if value not in choices:
            raise ValueError(f"{key} must be one of {choices}. Received: {key}={value!r}")
