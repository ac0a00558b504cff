"""What the studies' runs say: the recipe's decisions by their rule, seeds, data size, and the
time each model took to reach an accuracy."""

import json
import math

import pytest
from support import write_run

from agegender.config import Paths
from agegender.results import store
from agegender.results import studies as results


def set_scores(folder, *, mae, accuracy, images=None):
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["overall"] |= {"age_mae": mae, "gender_accuracy": accuracy}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    if images:
        record = json.loads((folder / "provenance.json").read_text())
        record["parameters"]["data"]["train"]["images"] = images
        (folder / "provenance.json").write_text(json.dumps(record))


@pytest.fixture
def paths(tmp_path):
    return Paths(tmp_path, tmp_path / "data")


def study_runs(paths, scores: dict, study="recipe"):
    folder = paths.profile_results("smoke") / store.STUDIES / study
    for seed, (name, (mae, accuracy)) in enumerate(scores.items()):
        write_run(folder / name, seed=seed)
        set_scores(folder / name, mae=mae, accuracy=accuracy)
    return store.load_study("smoke", study, list(scores), paths)


VARIANTS = {
    "reference": {},
    "better_age": {"schedule": "cosine"},
    "better_gender": {"gender_loss_weight": 10.0},
    "noise": {"width": 48},
    "trade_off": {"age_head": "dex"},
    "also_width": {"width": 64},
    "absent": {"convs": 2},
}


def test_the_recipe_keeps_what_beats_the_reference_by_the_rule(paths):
    runs = study_runs(
        paths,
        {
            "reference": (8.0, 0.80),
            "better_age": (7.5, 0.798),  # 0.5 years better, accuracy within the step
            "better_gender": (8.05, 0.82),  # accuracy better, MAE within the step
            "noise": (7.95, 0.80),  # within the step on both: not evidence
            "trade_off": (7.0, 0.78),  # better age, but accuracy lost beyond the step
            "also_width": (7.8, 0.801),  # kept, but worse than better_age on the shared key?
        },
    )
    verdicts = results.decisions(VARIANTS, runs)
    assert verdicts == {
        "reference": "reference",
        "better_age": "kept",
        "better_gender": "kept",
        "noise": "dropped",
        "trade_off": "dropped",
        "also_width": "kept",
        "absent": "not run",
    }
    assert results.chosen_recipe(VARIANTS, runs) == {
        "schedule": "cosine",
        "gender_loss_weight": 10.0,
        "width": 64,
    }
    table = results.recipe_table(VARIANTS, runs)
    assert table.loc["better_age", "Δ MAE"] == "-0.50"
    assert table.loc["reference", "changes"] == "(the reference)"
    assert table.loc["absent", "val age MAE"] == "" and table.loc["absent", "decision"] == "not run"


def test_of_two_kept_variants_setting_one_key_the_lower_mae_wins(paths):
    variants = {"reference": {}, "w48": {"width": 48}, "w64": {"width": 64}}
    runs = study_runs(paths, {"reference": (8, 0.8), "w48": (7.0, 0.8), "w64": (7.5, 0.8)})
    assert results.chosen_recipe(variants, runs) == {"width": 48}


def test_seed_spread_is_the_sample_standard_deviation(paths):
    runs = study_runs(
        paths, {"seed_0": (6.0, 0.90), "seed_1": (6.2, 0.91), "seed_2": (6.4, 0.92)}, "seeds"
    )
    spread = results.seed_spread(runs)
    assert spread["seeds"] == 3 and spread["images"] == 400
    assert spread["age_mae"] == pytest.approx((6.2, 0.2))
    assert spread["gender_accuracy"] == pytest.approx((0.91, 0.01))
    table = results.seed_table(runs)
    assert table.loc["mean ± sd over seeds", "age MAE [95% bootstrap CI]"] == "6.20 ± 0.20"
    assert list(table.index[:3]) == ["seed 0", "seed 1", "seed 2"]
    assert math.isnan(results.seed_spread({"one": runs["seed_0"]})["age_mae"][1])


def test_data_size_table_orders_by_training_images(paths):
    runs = study_runs(paths, {"n4000": (7.0, 0.85), "n1000": (9.0, 0.75)}, "data_size")
    folder = paths.profile_results("smoke") / store.STUDIES / "data_size"
    set_scores(folder / "n4000", mae=7.0, accuracy=0.85, images=4000)
    set_scores(folder / "n1000", mae=9.0, accuracy=0.75, images=1000)
    write_run(folder / "n4000_seed_1", seed=1)
    set_scores(folder / "n4000_seed_1", mae=7.4, accuracy=0.87, images=4000)
    runs = store.load_study("smoke", "data_size", ["n4000", "n1000", "n4000_seed_1"], paths)
    table = results.data_size_table(runs).set_index("training images")
    assert table.index.tolist() == [1000, 4000]
    assert table["runs"].tolist() == [1, 2]
    assert table.loc[4000, "age MAE"] == pytest.approx(7.2)
    assert table.loc[4000, "gender accuracy sd"] == pytest.approx(0.014, abs=1e-3)
    assert math.isnan(table.loc[1000, "age MAE sd"])


def test_time_to_accuracy_counts_epochs_and_feature_extraction(paths):
    folder = paths.profile_results("smoke") / "custom_cnn"
    write_run(folder)  # epochs of 40 s reaching val MAE 9.5 then 8.0; 10 s of features
    runs = {"custom_cnn": store.load(folder)}
    table = results.time_to_accuracy(runs, thresholds=(9.6, 8.0, 7.0))
    assert table.loc["custom_cnn"].tolist() == [
        "0.8 (epoch 1)",  # 40 s + 10 s
        "1.5 (epoch 2)",  # 80 s + 10 s
        "not reached",
        "8.00",
    ]
