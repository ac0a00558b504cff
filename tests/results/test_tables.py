"""The book's tables as a reader sees them: titled, in each metric's digits, groups by name, no
NaN, no meaningless index."""

import json
import re

import pandas as pd
import pytest
from support import write_run

from agegender import runner
from agegender.config import Paths
from agegender.models.weights import IMAGENET_FILES
from agegender.results import store, tables
from agegender.results import studies as results


@pytest.fixture
def runs(tmp_path):
    write_run(tmp_path / "results" / "smoke" / "custom_cnn")
    write_run(tmp_path / "results" / "smoke" / "resnet50_finetune", age_offset=10.0, seed=1)
    return store.load_models("smoke", Paths(tmp_path, tmp_path / "data"))


def no_nan(html: str) -> bool:
    return not re.search(r"\bnan\b", html, re.IGNORECASE)


def cells(html: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[dh][^>]*>.*?</t[dh]>", html)]


def caption(html: str) -> str:
    return re.search(r"<caption>(.*?)</caption>", html, re.S).group(1)


def test_a_group_table_is_titled_with_its_metric_in_its_digits(runs):
    html = tables.group_table(runs, "age_band", "age_mae").to_html()
    assert caption(html).startswith("age MAE (years) by age band")
    values = [c for c in cells(html) if re.fullmatch(r"[0-9.]+", c)]
    assert values and all(re.fullmatch(r"[0-9]+\.[0-9]{2}", v) for v in values)
    accuracy = tables.group_table(runs, "race", "gender_accuracy").to_html()
    assert caption(accuracy).startswith("gender accuracy by race")
    assert all(re.fullmatch(r"[01]\.[0-9]{3}", c) for c in cells(accuracy) if c[:2] in "0.1.")
    assert "White (n=" in accuracy and 'class="dataframe"' in accuracy
    assert no_nan(html) and no_nan(accuracy)


def test_races_and_genders_stored_as_labels_are_named(runs):
    for run in runs.values():
        for row in run.metrics["by_group"]:
            if row["grouping"] == "race":
                row["group"] = str(
                    ["White", "Black", "Asian", "Indian", "Others"].index(row["group"])
                )
    data = tables.group_table(runs, "race", "age_mae").data
    assert [c.split(" (")[0] for c in data.columns] == [
        "White",
        "Black",
        "Asian",
        "Indian",
        "Others",
    ]
    assert tables.group_name("gender", 1) == "female"


def test_an_undefined_metric_is_a_dash_the_caption_explains(runs):
    html = tables.group_table(runs, "gender", "gender_auc").to_html()  # AUC within one gender
    assert no_nan(html)
    assert tables.NO_VALUE in cells(html)
    assert f"{tables.NO_VALUE}: not defined for this group" in caption(html)


def test_a_model_chapter_gets_every_group_in_one_table(runs):
    summary = tables.group_summary(runs["custom_cnn"])
    data = summary.data
    assert list(data.index.get_level_values(0).unique()) == ["age band", "race", "gender"]
    assert list(data.columns) == ["test images", "age MAE (years)", "gender accuracy"]
    assert data.loc[("gender", "female"), "test images"] == 30
    html = summary.to_html()
    assert caption(html).startswith("custom_cnn: age MAE (years) and gender accuracy by age band")
    assert no_nan(html)
    assert '<tr>\n      <th class="index_name' not in html  # no row of index names
    compared = tables.group_tables(runs)
    assert [caption(t.to_html()) for t in compared][:2] == [
        "age MAE (years) by age band (n: test images)",
        "gender accuracy by age band (n: test images)",
    ]


def test_the_weights_files_are_a_list_with_links_and_md5s():
    text = tables.imagenet_files()
    for spec in IMAGENET_FILES.values():
        assert f"[`{spec.file}`]({spec.url})" in text
        assert f"md5 `{spec.md5}`" in text
    assert text.count("\n- ") == len(IMAGENET_FILES) - 1


def test_the_data_size_view_has_no_nan_and_no_integer_index(tmp_path):
    paths = Paths(tmp_path, tmp_path / "data")
    folder = paths.profile_results("smoke") / store.STUDIES / "data_size"
    for name, seed, images, mae in (
        ("n1000", 0, 1000, 9.0),
        ("a", 1, 4000, 7.0),
        ("b", 2, 4000, 7.4),
    ):
        write_run(folder / name, seed=seed)
        metrics = json.loads((folder / name / "metrics.json").read_text())
        metrics["overall"]["age_mae"] = mae
        (folder / name / "metrics.json").write_text(json.dumps(metrics))
        record = json.loads((folder / name / "provenance.json").read_text())
        record["parameters"]["data"]["train"]["images"] = images
        (folder / name / "provenance.json").write_text(json.dumps(record))
    runs = store.load_study("smoke", "data_size", ["n1000", "a", "b"], paths)
    data = results.data_size_table(runs)
    assert pd.isna(data.loc[0, "age MAE sd"])  # the plot's data keeps its NaN
    view = results.data_size_view(data)
    html = view.to_html()
    assert no_nan(html)
    assert list(view.data.index) == ["1,000", "4,000"]
    assert view.data.loc["1,000", "test age MAE (years)"] == "9.00"
    assert view.data.loc["4,000", "test age MAE (years)"] == "7.20\u00a0±\u00a00.28"
    assert "training images" in html and "mean ± sd" in caption(html)
    assert results.data_size_view("*No results yet.*") == "*No results yet.*"


def test_one_seed_has_no_spread_row(tmp_path):
    paths = Paths(tmp_path, tmp_path / "data")
    write_run(paths.profile_results("smoke") / store.STUDIES / "seeds" / "seed_0")
    runs = store.load_study("smoke", "seeds", ["seed_0"], paths)
    table = results.seed_table(runs)
    assert list(table.index) == ["seed 0"]
    assert no_nan(table.to_html())


def test_each_chapter_has_one_compact_parameters_table():
    found = runner.parameters_tables()
    assert "02_custom_cnn" in found
    table = found["02_custom_cnn"]
    assert list(table.data.columns) == ["meaning", "gpu", "cpu", "smoke"]
    assert table.data.loc["profile"].tolist()[1:] == ["gpu", "cpu", "smoke"]  # no quotes
    assert table.data.loc["max_train_images", "gpu"] == "None"
    assert all(table.data.loc[:, "gpu":].map(bool).to_numpy().ravel())  # no blank value
    html = table.to_html()
    assert caption(html).startswith("02_custom_cnn.ipynb")
    assert no_nan(html)
    assert not any("'" in value for value in table.data.loc[:, "gpu":].to_numpy().ravel())


def test_chapter_times_say_what_the_plus_means_and_when_in_utc():
    times = {
        "01_data": {
            "seconds": 90,
            "git_commit": "0123456789abcdef",
            "git_dirty": True,
            "finished_at": "2026-12-03T09:49:28+01:00",
        }
    }
    table = tables.chapter_times_table(times)
    assert table.loc["01_data", "commit (+: uncommitted changes)"] == "0123456789+"
    assert table.loc["01_data", "finished (UTC)"] == "2026-12-03 08:49"
    assert table.loc["all chapters", "minutes"] == 1.5


def test_a_prose_column_wraps_while_the_others_read_on_one_line():
    table = pd.DataFrame({"meaning": ["a long sentence " * 5], "cpu": ["64"]}, index=["size"])
    html = tables.styled(table, "Parameters", "t", prose=("meaning",)).to_html()
    style = html.split("</style>")[0]
    assert "#T_t_row0_col0" in style and "white-space: normal" in style
    assert "row0_col1" not in style
