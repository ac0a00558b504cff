"""Integration test on the real UTKFace archive; runs when UTKFACE_SOURCE is set (CI sets it)."""

from pathlib import Path

import pytest
from support import REAL_SOURCE

from agegender.data.dataset import COUNTS, report
from agegender.data.manifest import apply_duplicate_policy
from agegender.data.split import make_split

pytestmark = [
    pytest.mark.real_data,
    pytest.mark.skipif(not REAL_SOURCE, reason="set UTKFACE_SOURCE to the UTKFace archive"),
]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def real(real_data):
    return real_data


def test_real_counts(real):
    counts = report(real)
    assert {key: counts[key] for key in (*COUNTS, "rejected", "splits")} == {
        "files": 23708,
        "accepted": 23708,
        "rejected": {},
        "unique_images": 23318,
        "duplicate_groups": 375,
        "duplicate_files": 390,
        "conflicting_groups": 259,
        "conflicting_files": 531,
        "race_unknown": 3,
        "used": 23059,
        "splits": {"train": 16146, "val": 3459, "test": 3454},
        "cross_split_duplicate_groups": 0,
        "new_files_not_in_split": 0,
    }


def test_the_committed_split_is_what_the_real_files_give(real, tmp_path):
    policy = real.policy
    table = apply_duplicate_policy(
        real.manifest, duplicates=policy["duplicates"], conflicts=policy["conflicts"]
    )
    remade = make_split(table, fractions=tuple(policy["fractions"]), seed=policy["seed"])
    committed = (REPO / "data" / "splits" / "utkface.csv").read_text()
    assert remade.to_csv(index=False, lineterminator="\n") == committed
    assert policy["made_from_dataset_sha256"] == report(real)["dataset_sha256"]


def test_real_images_decode_into_the_cache(real):
    rows = real.rows("test", max_images=200)
    batches = real.batches("test", size=32, batch_size=64, max_images=200)
    x, y = batches[0]
    assert x.shape == (64, 32, 32, 3) and 20 < x.mean() < 235
    assert len(rows) == 200 and (y["age"] == real.split["age"].to_numpy()[rows[:64]]).all()
