"""UTKFace labels: parse `[age]_[gender]_[race]_[datetime].jpg.chip.jpg` names; the vocabulary.

Real UTKFace names are not all well formed (a missing race field, a stray space, a missing dot,
timestamps of odd length). A name is accepted when its age and gender can be read unambiguously;
race is recorded as unknown when the field is absent. Everything else is rejected with a reason
taken from a fixed set, so rejections can be counted. Only the ASCII digits 0-9 make numbers
(fullwidth digits or a superscript two are not ages), and the labels end at the first dot
(``30_0.5_...`` is refused, not read as gender 0).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_AGE = 116
GENDERS = ("male", "female")  # label 0, 1
RACES = ("White", "Black", "Asian", "Indian", "Others")  # label 0..4
# (low, high) inclusive; used for stratification and for per-band evaluation.
AGE_BANDS = ((0, 12), (13, 19), (20, 39), (40, 59), (60, MAX_AGE))
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

_NUMBER = re.compile(r"[0-9]+")
_TIMESTAMP = re.compile(r"[0-9]{8,}")
_DOCUMENTED = re.compile(r"[0-9]+_[01]_[0-4]_[0-9]{17}\.jpg\.chip\.jpg")


class InvalidName(ValueError):
    """A file name whose labels cannot be read; `reason` is one of a fixed set of strings."""

    def __init__(self, reason: str, name: str):
        super().__init__(f"{reason}: {name!r}")
        self.reason = reason


@dataclass(frozen=True)
class Labels:
    age: int
    gender: int
    race: int | None  # None when the name has no race field


def parse_name(name: str) -> Labels:
    """Read the labels from one UTKFace file name.

    Args:
        name: the file's base name, e.g. ``"24_0_1_20170116220224657.jpg.chip.jpg"``.

    Returns:
        The parsed `Labels`.

    Raises:
        InvalidName: when age or gender cannot be read unambiguously.
    """
    if not name.lower().endswith(IMAGE_SUFFIXES):
        raise InvalidName("not an image file name", name)
    if not _is_utf8(name):
        raise InvalidName("name is not valid UTF-8", name)
    labels, suffix = name.split(".", 1)
    if any(character.isdigit() for character in suffix):
        raise InvalidName("a name field holds a dot", name)
    fields = [field.strip() for field in labels.split("_")]
    if len(fields) < 2:
        raise InvalidName("too few name fields", name)
    age = _read_age(fields[0], name)
    gender = _read_gender(fields[1], name)
    race = _read_race(fields, name)
    return Labels(age=age, gender=gender, race=race)


def _is_utf8(name: str) -> bool:
    """False for a name read from disk with undecodable bytes (Python keeps them as surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _read_age(field: str, name: str) -> int:
    if not _NUMBER.fullmatch(field):
        raise InvalidName("age is not a number", name)
    if int(field) > MAX_AGE:
        raise InvalidName(f"age outside 0-{MAX_AGE}", name)
    return int(field)


def _read_gender(field: str, name: str) -> int:
    if field not in ("0", "1"):
        raise InvalidName("gender is not 0 or 1", name)
    return int(field)


def _read_race(fields: list[str], name: str) -> int | None:
    third = fields[2] if len(fields) > 2 else ""
    if third in {str(race) for race in range(len(RACES))}:
        return int(third)
    if len(fields) == 2 or (len(fields) == 3 and _TIMESTAMP.fullmatch(third)):
        return None  # no race field; a third field, when there is one, is the timestamp
    raise InvalidName("race is not 0-4", name)


def is_documented_name(name: str) -> bool:
    """True when `name` follows UTKFace's documented pattern exactly (17-digit timestamp)."""
    return _DOCUMENTED.fullmatch(name) is not None


def age_band(age: int) -> str:
    """The label of the `AGE_BANDS` interval that holds `age`, e.g. ``"20-39"`` or ``"60+"``."""
    for low, high in AGE_BANDS:
        if low <= age <= high:
            return f"{low}+" if high == MAX_AGE else f"{low}-{high}"
    raise ValueError(f"age must be within 0-{MAX_AGE}. Received: age={age}")
