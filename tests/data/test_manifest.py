import os

import pandas as pd
import pytest
from support import BAD_CONTENTS, BAD_NAMES, ODD_BUT_ACCEPTED

from agegender.data.manifest import COLUMNS, apply_duplicate_policy, dataset_fingerprint, scan


def test_every_file_is_accepted_or_rejected_with_its_reason(utkface_folder):
    folder, _ = utkface_folder
    table = scan(folder).set_index("file")
    assert set(table.index) == {p.name for p in folder.iterdir()}
    rejected = table[table["status"] == "rejected"]["reason"].to_dict()
    assert rejected == {**BAD_NAMES, **BAD_CONTENTS}
    for name, (age, gender, race) in ODD_BUT_ACCEPTED.items():
        row = table.loc[name]
        assert (row["status"], row["age"], row["gender"]) == ("accepted", age, gender)
        assert (None if pd.isna(row["race"]) else row["race"]) == race


def test_default_policy_keeps_one_copy_and_drops_conflicting_groups(utkface_folder):
    folder, kinds = utkface_folder
    table = apply_duplicate_policy(scan(folder)).set_index("file")
    assert list(table.reset_index().columns) == COLUMNS
    original = kinds["good"][0]
    copy = kinds["copy"][0]
    assert table.loc[original, "group"] == table.loc[copy, "group"]
    assert table.loc[[original, copy], "group_size"].tolist() == [2, 2]
    assert table.loc[copy, "use"] == (copy < original)  # the first by name represents the group
    assert not table.loc[max(original, copy), "use"]
    assert table.loc[max(original, copy), "note"] == f"copy of {min(original, copy)}"
    for name in kinds["conflict"]:
        assert table.loc[name, "conflict"] and not table.loc[name, "use"]
        assert table.loc[name, "note"] == "duplicate group with conflicting labels"
    assert not table.loc[table["status"] == "rejected", "use"].any()
    assert table["use"].sum() == len(kinds["good"]) + len(kinds["odd"]) - 1  # minus conflict pair


def test_policy_all_and_first_keeps_every_copy_with_the_first_labels(utkface_folder):
    folder, kinds = utkface_folder
    table = apply_duplicate_policy(scan(folder), duplicates="all", conflicts="first")
    table = table.set_index("file")
    first, second = sorted(kinds["conflict"])
    assert table.loc[[first, second], "use"].all()
    assert table.loc[second, "age"] == table.loc[first, "age"]
    assert table["use"].sum() == len(kinds["good"]) + len(kinds["odd"]) + 2


@pytest.mark.parametrize("policy", [{"duplicates": "some"}, {"conflicts": "vote"}])
def test_unknown_policy_is_refused(utkface_folder, policy):
    folder, _ = utkface_folder
    with pytest.raises(ValueError, match="Received"):
        apply_duplicate_policy(scan(folder), **policy)


def test_scan_cache_is_reused_and_invalidated_by_a_changed_file(utkface_folder, tmp_path):
    folder, kinds = utkface_folder
    cache_file = tmp_path / "manifest.csv"
    first = scan(folder, cache_file=cache_file)
    assert cache_file.is_file()
    again = scan(folder, cache_file=cache_file)
    assert again.equals(first)

    victim = folder / kinds["good"][5]
    victim.write_bytes(b"")
    os.utime(victim, ns=(1, 1))
    rescanned = scan(folder, cache_file=cache_file).set_index("file")
    assert rescanned.loc[victim.name, "reason"] == "empty file"


def test_dataset_fingerprint_names_the_exact_set_of_files(utkface_folder):
    folder, kinds = utkface_folder
    table = scan(folder)
    assert dataset_fingerprint(table) == dataset_fingerprint(table.sample(frac=1, random_state=1))
    (folder / kinds["good"][3]).unlink()
    assert dataset_fingerprint(scan(folder)) != dataset_fingerprint(table)
