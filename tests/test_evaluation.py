"""Every metric against values computed by hand on small arrays."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from agegender import evaluation

# Four UTKFace-style names: ages 10, 30, 45, 70; races White, Black, Asian, (none); genders m/f.
FILES = [
    "10_0_0_20170101000000000.jpg.chip.jpg",
    "30_1_1_20170101000000001.jpg.chip.jpg",
    "45_0_2_20170101000000002.jpg.chip.jpg",
    "70_1_20170101000000003.jpg.chip.jpg",
]


@pytest.fixture
def table():
    # errors pred - true: +2, -6, +5, -1
    return evaluation.predictions_table(
        FILES,
        age_true=[10, 30, 45, 70],
        age_pred=[12, 24, 50, 69],
        gender_true=[0, 1, 0, 1],
        gender_prob=[0.2, 0.4, 0.6, 0.9],
    )


def test_predictions_table_thresholds_probabilities(table):
    assert list(table.columns) == list(evaluation.COLUMNS)
    assert table["gender_pred"].tolist() == [0, 0, 1, 1]
    at_threshold = evaluation.predictions_table(None, [1, 2], [1, 2], [0, 1], [0.5, 0.49])
    assert at_threshold["gender_pred"].tolist() == [1, 0]
    assert at_threshold["file"].tolist() == ["0", "1"]


def test_age_metrics_by_hand():
    true, pred = [10, 30, 45, 70], [12, 24, 50, 69]  # errors +2 -6 +5 -1
    assert evaluation.mae(true, pred) == pytest.approx((2 + 6 + 5 + 1) / 4)  # 3.5
    assert evaluation.rmse(true, pred) == pytest.approx(math.sqrt((4 + 36 + 25 + 1) / 4))
    assert evaluation.mean_error(true, pred) == pytest.approx((2 - 6 + 5 - 1) / 4)  # 0.0
    # |errors| 2, 6, 5, 1: within 5 years inclusive -> 3 of 4
    assert evaluation.cumulative_score(true, pred) == pytest.approx(0.75)
    assert evaluation.cumulative_score(true, pred, years=1) == pytest.approx(0.25)


def test_mean_error_sign_is_pred_minus_true():
    assert evaluation.mean_error([20, 20], [25, 23]) == pytest.approx(4.0)


def test_accuracy_by_hand():
    assert evaluation.accuracy([0, 1, 1, 0, 1], [0, 1, 0, 0, 0]) == pytest.approx(3 / 5)


def test_roc_auc_by_hand():
    # positives score 0.35, 0.8; negatives 0.1, 0.4. Pairs won: (0.35>0.1), (0.8>0.1), (0.8>0.4)
    assert evaluation.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(3 / 4)
    # a tie between a positive and a negative counts one half: (0.5, 1, 1, 1) / 4
    assert evaluation.roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]) == pytest.approx(3.5 / 4)
    assert evaluation.roc_auc([1, 1, 0, 0], [0.9, 0.8, 0.1, 0.2]) == 1.0
    assert evaluation.roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.9, 0.8]) == 0.0
    assert math.isnan(evaluation.roc_auc([1, 1], [0.3, 0.4]))


def test_roc_auc_matches_pair_counting_on_random_data():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 200)
    scores = rng.integers(0, 10, 200) / 10  # many ties
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert evaluation.roc_auc(labels, scores) == pytest.approx(pairs / (len(pos) * len(neg)))


def test_average_ranks_share_ties():
    assert evaluation.average_ranks([3.0, 1.0, 3.0, 2.0]).tolist() == [3.5, 1.0, 3.5, 2.0]


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same length"):
        evaluation.mae([1, 2], [1])


def test_metrics_of_a_table(table):
    result = evaluation.metrics(table)
    assert result["n"] == 4
    assert result["age_mae"] == pytest.approx(3.5)
    assert result["age_cs5"] == pytest.approx(0.75)
    # gender_pred 0 0 1 1 against 0 1 0 1 -> 2 of 4
    assert result["gender_accuracy"] == pytest.approx(0.5)
    # positives 0.4, 0.9; negatives 0.2, 0.6: won (0.4>0.2), (0.9>0.2), (0.9>0.6) -> 3/4
    assert result["gender_auc"] == pytest.approx(0.75)


def test_groups_come_from_names_and_labels(table):
    grouped = evaluation.with_groups(table)
    assert grouped["age_band"].tolist() == ["0-12", "20-39", "40-59", "60+"]
    assert grouped["race"].tolist() == ["White", "Black", "Asian", "unknown"]
    assert grouped["gender"].tolist() == ["male", "female", "male", "female"]
    given = evaluation.with_groups(table.assign(race=[4, "Indian", None, 0]))
    assert given["race"].tolist() == ["Others", "Indian", "unknown", "White"]


def test_metrics_by_group_by_hand(table):
    by = evaluation.metrics_by_group(table)
    assert list(by.columns) == ["grouping", "group", "n", *evaluation.METRICS]
    genders = by[by["grouping"] == "gender"].set_index("group")
    assert genders.index.tolist() == ["male", "female"]
    # male rows: errors +2, +5; gender_pred 0, 1 against 0, 0
    assert genders.loc["male", "age_mae"] == pytest.approx(3.5)
    assert genders.loc["male", "age_mean_error"] == pytest.approx(3.5)
    assert genders.loc["male", "gender_accuracy"] == pytest.approx(0.5)
    assert math.isnan(genders.loc["male", "gender_auc"])
    # female rows: errors -6, -1
    assert genders.loc["female", "age_rmse"] == pytest.approx(math.sqrt((36 + 1) / 2))
    assert genders.loc["female", "age_cs5"] == pytest.approx(0.5)
    bands = by[by["grouping"] == "age_band"]
    assert bands["group"].tolist() == ["0-12", "20-39", "40-59", "60+"]
    assert bands["n"].tolist() == [1, 1, 1, 1]
    assert by[by["grouping"] == "race"]["group"].tolist() == ["White", "Black", "Asian", "unknown"]


def test_bootstrap_is_seeded_and_brackets_the_value():
    rng = np.random.default_rng(0)
    n = 300
    age_true = rng.integers(1, 90, n)
    gender_true = rng.integers(0, 2, n)
    table = evaluation.predictions_table(
        None,
        age_true,
        age_true + rng.normal(0, 6, n),
        gender_true,
        np.clip(gender_true * 0.6 + rng.uniform(0, 0.4, n), 0, 1),
    )
    first = evaluation.bootstrap_ci(table, resamples=200, seed=3)
    again = evaluation.bootstrap_ci(table, resamples=200, seed=3)
    other = evaluation.bootstrap_ci(table, resamples=200, seed=4)
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(other)
    assert first["metric"].tolist() == list(evaluation.METRICS)
    assert ((first["low"] <= first["value"]) & (first["value"] <= first["high"])).all()
    mae_row = first.set_index("metric").loc["age_mae"]
    assert mae_row["high"] - mae_row["low"] < 2  # 300 rows: a narrow interval around ~4.8


def test_bootstrap_percentiles_by_hand():
    # Two rows with errors 0 and 10: every resample's MAE is 0, 5 or 10 with chances 1/4, 1/2,
    # 1/4, so a 50% interval runs from 5 to 5 and a 99% interval from 0 to 10.
    table = evaluation.predictions_table(None, [20, 20], [20, 30], [0, 1], [0.1, 0.9])
    wide = evaluation.bootstrap_ci(table, resamples=2000, confidence=0.99, seed=0)
    narrow = evaluation.bootstrap_ci(table, resamples=2000, confidence=0.5, seed=0)
    wide_mae = wide.set_index("metric").loc["age_mae"]
    narrow_mae = narrow.set_index("metric").loc["age_mae"]
    assert (wide_mae["low"], wide_mae["value"], wide_mae["high"]) == (0, 5, 10)
    assert (narrow_mae["low"], narrow_mae["high"]) == (5, 5)


def test_bootstrap_validates_arguments(table):
    with pytest.raises(ValueError, match="resamples"):
        evaluation.bootstrap_ci(table, resamples=0)
    with pytest.raises(ValueError, match="confidence"):
        evaluation.bootstrap_ci(table, confidence=95)


def test_summarize_is_json_ready(table):
    summary = evaluation.summarize(table, resamples=50)
    text = json.dumps(summary, allow_nan=False)  # NaN (AUC within one gender) became null
    assert json.loads(text)["overall"]["age_mae"] == pytest.approx(3.5)
    assert set(summary["confidence_intervals"]) == set(evaluation.METRICS)
    male = next(r for r in summary["by_group"] if r["group"] == "male")
    assert male["gender_auc"] is None


def test_rows_whose_gender_is_not_known_count_for_age_only():
    table = evaluation.predictions_table(
        ["a", "b", "c", "d"],
        [20, 30, 40, 50],
        [22, 30, 40, 50],
        [1, 0, None, None],
        [0.9, 0.6, 0.2, 0.8],
    )
    assert table["gender_true"].isna().tolist() == [False, False, True, True]
    got = evaluation.metrics(table)
    assert got["age_mae"] == 0.5
    assert got["gender_accuracy"] == 0.5  # of the two known: right, then wrong
    intervals = evaluation.bootstrap_ci(table, resamples=50).set_index("metric")
    assert (
        0
        <= intervals.loc["gender_accuracy", "low"]
        <= intervals.loc["gender_accuracy", "high"]
        <= 1
    )
    groups = evaluation.metrics_by_group(table, ["gender"])
    assert groups["group"].tolist() == ["male", "female", "unknown"]
    assert groups["n"].tolist() == [1, 1, 2]
