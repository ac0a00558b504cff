"""The data chapter's tables say things in words: labels by name, counts with separators."""

import pandas as pd

from agegender.data.dataset import counts_table, odd_names_table, rejected_table, split_sizes


def test_odd_names_show_labels_in_words_and_a_missing_race_as_unknown():
    files = pd.DataFrame(
        {
            "file": ["1_0_0_20161219203650636.jpg.chip.jpg", "39_1_20170116174525125.jpg.chip.jpg"],
            "age": [1, 39],
            "gender": [0, 1],
            "race": [0, None],
            "status": ["accepted", "accepted"],
        }
    )
    table = odd_names_table(files)
    assert list(table.index) == ["39_1_20170116174525125.jpg.chip.jpg"]  # documented one left out
    assert table.iloc[0][["gender", "race"]].tolist() == ["female", "unknown"]
    assert "<th>file</th>" in table.to_html().replace(' style="text-align: right;"', "")


def test_counts_read_as_numbers_and_no_rejection_as_a_sentence():
    counts = {"files": 23708, "rejected": {}}
    assert counts_table(counts, ("files",)).loc["files seen", "files"] == "23,708"
    assert rejected_table(counts).data == "No file was rejected."
    rejected = rejected_table({"rejected": {"unreadable image": 1200}})
    assert rejected.loc["unreadable image", "files"] == "1,200"
    split = pd.DataFrame({"split": ["train"] * 1500 + ["val", "test"]})
    assert split_sizes(split).loc["images"].tolist() == ["1,500", "1", "1"]
