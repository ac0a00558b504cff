import pandas as pd
import pytest

from agegender.data.labels import age_band
from agegender.data.manifest import apply_duplicate_policy, scan
from agegender.data.split import (
    COLUMNS,
    SPLITS,
    check_split,
    make_split,
    read_split,
    write_split,
)
from agegender.errors import DataError


@pytest.fixture
def manifest(utkface_folder):
    folder, _ = utkface_folder
    return apply_duplicate_policy(scan(folder))


def test_split_is_deterministic_and_seeded(manifest):
    first = make_split(manifest)
    assert first.equals(make_split(manifest.sample(frac=1, random_state=3)))
    assert not first["split"].equals(make_split(manifest, seed=7)["split"])
    assert list(first.columns) == COLUMNS
    assert len(first) == manifest["use"].sum()


def test_split_is_stratified_by_age_band_and_gender(manifest):
    table = make_split(manifest)
    strata = table.assign(band=table["age"].map(age_band)).groupby(["band", "gender"])
    for _, stratum in strata:
        if len(stratum) < 10:
            continue
        counts = stratum["split"].value_counts()
        assert counts["train"] == pytest.approx(0.7 * len(stratum), abs=1)
        assert counts["val"] == pytest.approx(0.15 * len(stratum), abs=1)
        assert counts["test"] == pytest.approx(0.15 * len(stratum), abs=1)


def test_duplicate_groups_never_span_two_splits(utkface_folder):
    folder, _ = utkface_folder
    everything = apply_duplicate_policy(scan(folder), duplicates="all", conflicts="first")
    table = make_split(everything)
    assert (table.groupby("sha256")["split"].nunique() == 1).all()
    assert (table.groupby("group")["split"].nunique() == 1).all()
    assert table["sha256"].duplicated().sum() == 2  # both copies are in, together


def test_bad_fractions_are_refused(manifest):
    with pytest.raises(ValueError, match="Received: fractions"):
        make_split(manifest, fractions=(0.8, 0.3, -0.1))


def test_split_file_round_trip(manifest, tmp_path):
    table = make_split(manifest)
    write_split(table, tmp_path / "split.csv")
    back = read_split(tmp_path / "split.csv")
    pd.testing.assert_frame_equal(back, table)
    assert back["race"].isna().sum() == table["race"].isna().sum() == 1


def test_malformed_split_files_are_reported(manifest, tmp_path):
    with pytest.raises(DataError, match="No split file"):
        read_split(tmp_path / "missing.csv")
    path = tmp_path / "split.csv"
    make_split(manifest).drop(columns="group").to_csv(path, index=False)
    with pytest.raises(DataError, match=r"lacks the columns \['group'\]"):
        read_split(path)
    make_split(manifest).assign(split="holdout").to_csv(path, index=False)
    with pytest.raises(DataError, match="holdout"):
        read_split(path)


def test_check_split_explains_every_kind_of_mismatch(manifest):
    table = make_split(manifest)
    assert check_split(table, manifest).ok
    files = table["file"].tolist()
    on_disk = manifest[manifest["file"] != files[0]].copy()  # one file gone
    on_disk.loc[on_disk["file"] == files[1], "sha256"] = "0" * 64  # one file changed
    on_disk.loc[on_disk["file"] == files[2], "use"] = False  # one file no longer usable
    extra = on_disk[on_disk["file"] == files[3]].assign(file="new.jpg")
    check = check_split(table, pd.concat([on_disk, extra], ignore_index=True))
    assert (check.missing, check.changed, check.unusable, check.new) == (
        [files[0]],
        [files[1]],
        [files[2]],
        ["new.jpg"],
    )
    assert not check.ok
    text = check.explain("split.csv", "images")
    for phrase in (
        "missing on disk",
        "sha256 differs",
        "no longer usable",
        "not in the split",
        "--new-split",
    ):
        assert phrase in text


def test_splits_constant_matches_the_file_values(manifest):
    assert set(make_split(manifest)["split"]) == set(SPLITS)
