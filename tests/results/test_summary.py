"""The chapters' values that are not a model's or a study's."""

from agegender.results import summary


def test_the_data_chapter_shows_each_count_each_split_and_the_rejected_files():
    counts = {key: i for i, key in enumerate(summary.DATA_COUNTS)}
    counts |= {"splits": {"train": 7, "val": 2, "test": 3}, "rejected": {"a": 2, "b": 1}}
    values = summary.data_chapter(counts)
    assert values["used"] == counts["used"] and values["files"] == 0
    assert (values["split_train"], values["split_val"], values["split_test"]) == (7, 2, 3)
    assert values["rejected_files"] == 3
