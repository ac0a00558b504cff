"""The one train/val/test split: made once, committed, and checked against the data on every run.

The split is stratified by age band and gender and group-aware: all used copies of a duplicate
group land in the same split. It is deterministic without a random number generator: within each
stratum, groups are ordered by ``sha256(seed:group)`` and cut by cumulative image count, so the same
files and seed give the same split on every machine and NumPy version.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from agegender.data.labels import age_band
from agegender.errors import DataError
from agegender.files import seeded_key, write_text_atomic

SPLITS = ("train", "val", "test")
COLUMNS = ["file", "sha256", "age", "gender", "race", "group", "split"]
DEFAULT_FRACTIONS = (0.70, 0.15, 0.15)
DEFAULT_SEED = 20170116
RESTORE = (
    "Split files are not edited by hand: restore the committed one with `git checkout -- {path}`, "
    "or make a split of your own with `agegender data prepare --new-split`."
)


def make_split(
    manifest: pd.DataFrame,
    *,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    seed: int = DEFAULT_SEED,
) -> pd.DataFrame:
    """Assign every used manifest row to train, val or test.

    Args:
        manifest: the output of `manifest.apply_duplicate_policy`.
        fractions: train, val and test shares; positive, summing to 1.
        seed: changes the assignment; the same seed always gives the same split.

    Returns:
        The split table with `COLUMNS`, sorted by file.

    Raises:
        DataError: too few images for every split to get some.
    """
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(
            f"fractions must be three positive shares summing to 1. Received: fractions={fractions}"
        )
    used = manifest[manifest["use"]]
    _require_enough(len(used), fractions)
    groups = used.groupby("group", sort=True).agg(
        age=("age", "first"), gender=("gender", "first"), images=("file", "size")
    )
    groups["stratum"] = groups["age"].map(age_band) + "/" + groups["gender"].astype(str)
    groups["order"] = [seeded_key(seed, g) for g in groups.index]
    bounds = pd.Series(fractions).cumsum().to_numpy()[:-1]

    assignment = {}
    for _, stratum in groups.sort_values("order").groupby("stratum", sort=True):
        share_before = (stratum["images"].cumsum() - stratum["images"]) / stratum["images"].sum()
        for group, share in share_before.items():
            assignment[group] = SPLITS[int((share >= bounds - 1e-12).sum())]
    table = used.assign(split=used["group"].map(assignment))
    _require_every_split(table, fractions)
    return _typed(table.sort_values("file", ignore_index=True))


def _fewest_images(fractions) -> int:
    """Images one age band and gender needs before each split gets one (7 for 70/15/15)."""
    return math.ceil(1 / min(fractions[1:]) - 1e-9)


def _require_enough(images: int, fractions) -> None:
    if images < _fewest_images(fractions):
        raise DataError(
            f"{images} usable image(s) are too few for a split: it needs at least "
            f"{_fewest_images(fractions)} images of one age band and gender for train, val and "
            "test to get one each (thousands for useful results). Add images."
        )


def _require_every_split(table: pd.DataFrame, fractions) -> None:
    empty = [name for name in SPLITS if not (table["split"] == name).any()]
    if empty:
        raise DataError(
            f"A split of these {len(table)} usable images leaves {' and '.join(empty)} empty: "
            f"it needs at least {_fewest_images(fractions)} images in one age band and gender "
            "for train, val and test to get one each. Add images."
        )


def write_split(split: pd.DataFrame, path: Path) -> None:
    write_text_atomic(path, split[COLUMNS].to_csv(index=False, lineterminator="\n"))


def read_split(path: Path) -> pd.DataFrame:
    """Read a split file, checking its columns and values."""
    if not path.is_file():
        raise DataError(f"No split file at {path}. Run `agegender data prepare` to make one.")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"The split file {path} lacks the columns {missing}.")
    bad = sorted(set(table["split"]) - set(SPLITS))
    if bad:
        raise DataError(f"The split file {path} has split values other than {SPLITS}: {bad}")
    repeated = table["file"].duplicated(keep=False)
    if repeated.any():
        lines = ", ".join(str(line + 2) for line in table.index[repeated][:10])
        raise DataError(
            f"The split file {path} lists a file more than once (lines {lines}). "
            + RESTORE.format(path=path)
        )
    try:
        return _typed(table.replace({"race": {"": None}}))
    except (TypeError, ValueError) as error:
        raise DataError(f"The split file {path} has a malformed value: {error}") from error


def _typed(table: pd.DataFrame) -> pd.DataFrame:
    table = table[COLUMNS].astype(
        {"file": "string", "sha256": "string", "group": "string", "split": "string"}
    )
    return table.astype({"age": "int64", "gender": "int64", "race": "Int64"})


@dataclass
class SplitCheck:
    """How the files on disk compare with the split file."""

    missing: list[str] = field(default_factory=list)  # in the split, not on disk
    changed: list[str] = field(default_factory=list)  # on disk with other contents
    unusable: list[str] = field(default_factory=list)  # on disk but rejected or left out now
    new: list[str] = field(default_factory=list)  # usable on disk, not in the split

    @property
    def ok(self) -> bool:
        return not (self.missing or self.changed or self.unusable)

    def explain(self, split_file: Path, images: Path) -> str:
        lines = [f"The images in {images} do not match the committed split {split_file}:"]
        for label, files in (
            ("listed in the split but missing on disk", self.missing),
            ("changed on disk (sha256 differs)", self.changed),
            ("listed in the split but no longer usable", self.unusable),
            ("usable on disk but not in the split", self.new),
        ):
            if files:
                lines.append(f"  - {len(files)} file(s) {label}, e.g. {', '.join(files[:3])}")
        lines.append(
            "Use the same UTKFace release as the split (the aligned & cropped set of "
            "23,708 files), or make a split for your copy with `agegender data prepare "
            "--new-split` (its results are then not comparable with the published ones)."
        )
        return "\n".join(lines)


def check_split(split: pd.DataFrame, manifest: pd.DataFrame) -> SplitCheck:
    """Compare the split with the manifest of the files on disk."""
    on_disk = manifest.set_index("file")
    in_split = split.set_index("file")
    common = in_split.index.intersection(on_disk.index)
    same = on_disk.loc[common, "sha256"] == in_split.loc[common, "sha256"]
    return SplitCheck(
        missing=sorted(in_split.index.difference(on_disk.index)),
        changed=sorted(same.index[~same]),
        unusable=sorted(same.index[same & ~on_disk.loc[common, "use"]]),
        new=sorted(on_disk.index[on_disk["use"]].difference(in_split.index)),
    )


def verify_split(
    split: pd.DataFrame, manifest: pd.DataFrame, path: Path, *, fractions, seed: int
) -> None:
    """Refuse a split file that is not the split its policy makes of its own files.

    The split is made again from the manifest rows of its files (after `check_split` passed, each
    is on disk, unchanged and used) with the recorded `fractions` and `seed`; every row must agree:
    labels as the file names give them, group, and which split the row is in.

    Raises:
        DataError: naming the rows that differ, and how to restore the file.
    """
    expected = make_split(
        manifest[manifest["file"].isin(split["file"])], fractions=tuple(fractions), seed=seed
    ).set_index("file")
    actual = split.set_index("file")
    expected = expected.loc[actual.index]
    lines = []
    for column in COLUMNS[1:]:
        here = actual[column].astype("string").fillna("unknown").to_numpy()
        made = expected[column].astype("string").fillna("unknown").to_numpy()
        for row in np.flatnonzero(here != made):
            lines.append(
                f"  - line {row + 2} ({actual.index[row]}): {column} {here[row]}, "
                f"expected {made[row]}"
            )
    if lines:
        raise DataError(
            f"The split file {path} disagrees in {len(lines)} place(s) with its file names (the "
            "labels) and its recorded policy (which split each file is in):\n"
            + "\n".join(lines[:10])
            + "\n"
            + RESTORE.format(path=path)
        )
