import numpy as np

from agegender import provenance


def test_git_commit_and_versions_are_recorded():
    commit = provenance.git_commit()
    assert set(commit) == {"git_commit", "git_dirty"}
    assert commit["git_commit"] is None or len(commit["git_commit"]) == 40
    versions = provenance.versions()
    assert versions["numpy"] == np.__version__ and "tensorflow" in versions
    assert versions["agegender"] and versions["python"]


def test_card_shows_every_field_and_flags_uncommitted_changes():
    record = provenance.collect(
        profile="smoke",
        parameters={"seed": 3, "epochs": 1},
        started=0,
        dataset_sha256="a" * 64,
        split_sha256="b" * 64,
        weights="none (random initialisation)",
    )
    record.update(git_commit="c" * 40, git_dirty=True)
    card = provenance.card(record)
    for text in (
        "`smoke`",
        "`seed=3`",
        "`aaaaaaaaaaaa`",
        "`bbbbbbbbbbbb`",
        "random initialisation",
        "`cccccccccccc` (with uncommitted changes)",
        "cpu:0",
    ):
        assert text in card
    record["git_dirty"] = False
    assert "uncommitted" not in provenance.card(record)
