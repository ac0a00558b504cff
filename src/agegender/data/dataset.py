"""The data layer's entry points: `prepare` the data, `report` on it, serve `batches` to Keras."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from agegender.config import Paths
from agegender.data import cache, manifest, sources
from agegender.data import split as splits
from agegender.errors import DataError
from agegender.files import file_sha256, seeded_key, write_json_atomic

# The plain counts of `report`, in the order the readable report shows them.
# The data report's counts (`report`), by key, with the words the CLI and the data chapter use.
COUNTS = {
    "files": "files seen",
    "accepted": "accepted",
    "unique_images": "unique images (by content)",
    "duplicate_groups": "duplicate groups (identical files)",
    "duplicate_files": "duplicate files (copies beyond the first)",
    "conflicting_groups": "conflicting groups (labels disagree)",
    "conflicting_files": "conflicting files (in those groups)",
    "race_unknown": "race unknown",
    "used": "used in the split",
    "cross_split_duplicate_groups": "duplicate groups across splits",
    "new_files_not_in_split": "new files not in the split",
}


def counts_table(counts: dict, keys, *, column: str = "files") -> pd.DataFrame:
    """Some of the report's counts as a one-column table, each row named by its words."""
    return pd.DataFrame(
        {column: [f"{counts[key]:,}" for key in keys]}, index=[COUNTS[k] for k in keys]
    )


def rejected_table(counts: dict):
    """The rejected files per reason, or the sentence saying that none was rejected."""
    if not counts["rejected"]:
        from IPython.display import Markdown

        return Markdown("No file was rejected.")
    return pd.DataFrame(
        {"files": [f"{n:,}" for n in counts["rejected"].values()]},
        index=list(counts["rejected"]),
    ).rename_axis(columns="reason")


def odd_names_table(files: pd.DataFrame) -> pd.DataFrame:
    """The files whose name departs from UTKFace's documented pattern, with their labels in words
    (race "unknown" where the name has none) and what became of each."""
    from agegender.data.labels import GENDERS, RACES, is_documented_name

    odd = files[~files["file"].map(is_documented_name)]
    return (
        pd.DataFrame(
            {
                "file": odd["file"],
                "age": odd["age"],
                "gender": odd["gender"].map(dict(enumerate(GENDERS))),
                "race": odd["race"].map(dict(enumerate(RACES))).fillna("unknown"),
                "status": odd["status"],
            }
        )
        .set_index("file")
        .rename_axis(index=None, columns="file")
    )


def split_sizes(split: pd.DataFrame) -> pd.DataFrame:
    """Images per split (train, val, test) as one row."""
    sizes = split["split"].value_counts()
    return pd.DataFrame(
        {which: [f"{sizes.get(which, 0):,}"] for which in ("train", "val", "test")},
        index=["images"],
    )


@dataclass
class UTKFace:
    """The prepared dataset: the files on disk (`manifest`), checked against the `split`."""

    paths: Paths
    manifest: pd.DataFrame
    split: pd.DataFrame
    check: splits.SplitCheck
    policy: dict

    def image_cache(self, size: int, color: str = "rgb") -> cache.ImageCache:
        """The split's images decoded at `size` px (built on first use, then memory-mapped)."""
        return cache.build_image_cache(
            self.split, self.paths.images, self.paths.cache, size=size, color=color
        )

    def rows(self, which: str, max_images: int | None = None, seed: int = 0) -> np.ndarray:
        """Indices (into `split` and the image cache) of one split, optionally a fixed subset.

        The subset is the first `max_images` rows in an order set by hashing `seed` with each file
        name, so it is the same on every machine and grows by adding rows.
        """
        if which not in splits.SPLITS:
            raise ValueError(f"which must be one of {splits.SPLITS}. Received: which={which!r}")
        rows = np.flatnonzero(self.split["split"].to_numpy() == which)
        if max_images is not None:
            if not isinstance(max_images, int) or max_images < 1:
                raise ValueError(
                    f"max_images must be a positive integer or None. "
                    f"Received: max_images={max_images!r}"
                )
            files = self.split["file"].to_numpy()
            keys = [seeded_key(seed, files[r]) for r in rows]
            rows = np.sort(rows[np.argsort(keys, kind="stable")[:max_images]])
        return rows

    def batches(
        self,
        which: str,
        *,
        size: int,
        color: str = "rgb",
        batch_size: int = 64,
        max_images: int | None = None,
        shuffle: bool | None = None,
        seed: int = 0,
        **kwargs,
    ):
        """A `FaceBatches` loader of one split.

        Args:
            which: ``"train"``, ``"val"`` or ``"test"``.
            size: image side in pixels.
            color: ``"rgb"`` or ``"grey"``.
            batch_size: images per batch; the last batch is never dropped.
            max_images: use a fixed subset of at most this many images (see `rows`).
            shuffle: default True for train; val and test are never shuffled.
            seed: seed of the subset and of the shuffling.
            **kwargs: passed to `FaceBatches` (`workers`, `dtype`, ...).
        """
        from agegender.data.loader import FaceBatches

        shuffle = which == "train" if shuffle is None else shuffle
        if shuffle and which != "train":
            raise ValueError(f"{which} batches are never shuffled. Received: shuffle=True")
        images = self.image_cache(size, color)
        return FaceBatches(
            images.images,
            self.rows(which, max_images, seed),
            self.split["age"].to_numpy(),
            self.split["gender"].to_numpy(),
            self.split["file"].to_numpy(),
            batch_size=batch_size,
            shuffle=shuffle,
            seed=seed,
            **kwargs,
        )


def prepare(
    paths: Paths | None = None,
    source: str | None = None,
    *,
    sha256: str | None = None,
    new_split: bool = False,
    duplicates: str = "one",
    conflicts: str = "exclude",
    fractions: tuple[float, float, float] = splits.DEFAULT_FRACTIONS,
    seed: int = splits.DEFAULT_SEED,
) -> UTKFace:
    """Get the images, check every file, and make or check the split.

    Args:
        paths: the project's folders (default `Paths.default()`).
        source: where UTKFace comes from (see `sources.prepare_images`).
        sha256: checksum of a downloaded archive.
        new_split: write a new split file from the files on disk; otherwise the committed split is
            used and a split is only written when none exists. The policy arguments below only
            apply to a new split; a committed split keeps the policy recorded beside it.
        duplicates, conflicts: the duplicate policy (see `manifest`).
        fractions, seed: the split's shares and seed (see `split.make_split`).

    The committed split is verified as a whole (`split.verify_split`: labels, groups and splits as
    its policy makes them from its files), and every image cache is checked byte for byte
    (`cache.check_caches`; one that fails is removed and rebuilt when next used).

    Returns:
        The checked `UTKFace`.

    Raises:
        DataError: no data, no usable images, or a split that does not match the data or its policy
            (with an explanation and what to do).
    """
    paths = paths or Paths.default()
    images = sources.prepare_images(paths, source, sha256=sha256)
    scanned = manifest.scan(images, cache_file=paths.manifest_cache)
    policy_file = paths.split_file.with_suffix(".json")
    making = new_split or not paths.split_file.is_file()
    if making:
        policy = {
            "duplicates": duplicates,
            "conflicts": conflicts,
            "fractions": list(fractions),
            "seed": seed,
        }
    else:
        policy = _read_policy(policy_file)
    table = manifest.apply_duplicate_policy(
        scanned, duplicates=policy["duplicates"], conflicts=policy["conflicts"]
    )
    _require_usable(table, images)
    if making:
        splits.write_split(
            splits.make_split(table, fractions=fractions, seed=seed), paths.split_file
        )
        write_json_atomic(
            policy_file, {**policy, "made_from_dataset_sha256": manifest.dataset_fingerprint(table)}
        )
    split = splits.read_split(paths.split_file)
    check = splits.check_split(split, table)
    if not check.ok:
        raise DataError(check.explain(paths.split_file, images))
    splits.verify_split(
        split, table, paths.split_file, fractions=policy["fractions"], seed=policy["seed"]
    )
    cache.check_caches(paths.cache)
    return UTKFace(paths=paths, manifest=table, split=split, check=check, policy=policy)


def report(data: UTKFace) -> dict:
    """Counts of everything: files seen, rejected by reason, duplicates, conflicts, split sizes."""
    table = data.manifest
    accepted = table[table["status"] == "accepted"]
    groups = accepted.groupby("sha256")
    sizes = groups.size()
    cross = data.split.groupby("sha256")["split"].nunique()
    return {
        "files": len(table),
        "accepted": len(accepted),
        "rejected": {
            reason: int(n)
            for reason, n in table.loc[table["status"] == "rejected", "reason"]
            .value_counts()
            .items()
        },
        "unique_images": len(sizes),
        "duplicate_groups": int((sizes > 1).sum()),
        "duplicate_files": int((sizes - 1).sum()),
        "conflicting_groups": int(groups["conflict"].first().sum()),
        "conflicting_files": int(accepted["conflict"].sum()),
        "race_unknown": int(accepted["race"].isna().sum()),
        "used": int(table["use"].sum()),
        "splits": {name: int((data.split["split"] == name).sum()) for name in splits.SPLITS},
        "cross_split_duplicate_groups": int((cross > 1).sum()),
        "new_files_not_in_split": len(data.check.new),
        "policy": {k: data.policy[k] for k in ("duplicates", "conflicts", "fractions", "seed")},
        "dataset_sha256": manifest.dataset_fingerprint(table),
        "split_sha256": file_sha256(data.paths.split_file),
    }


def _require_usable(table: pd.DataFrame, images: Path) -> None:
    """Refuse a folder without one usable image, counting why each file was not used."""
    if table["use"].any():
        return
    rejected = table.loc[table["status"] == "rejected", "reason"].value_counts()
    why = [f"{count} {reason}" for reason, count in rejected.items()]
    left_out = int((table["status"] == "accepted").sum())
    if left_out:
        why.append(f"{left_out} accepted but left out (duplicates with conflicting labels)")
    raise DataError(
        f"No usable images in {images}: {len(table)} file(s), "
        + ("; ".join(why) or "none")
        + ". Point --source at UTKFace's images (files named like "
        "24_0_1_20170116220224657.jpg.chip.jpg)."
    )


def _read_policy(path: Path) -> dict:
    try:
        policy = json.loads(path.read_text())
        if not {"duplicates", "conflicts", "fractions", "seed"} <= set(policy):
            raise ValueError("a key is missing")
    except (OSError, ValueError) as error:
        raise DataError(
            f"Cannot read the split's policy file {path} ({error}). It is committed "
            "beside the split; restore it, or make a new split with --new-split."
        ) from error
    return policy
