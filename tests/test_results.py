import json

import numpy as np
import pandas as pd
import pytest

from agegender import evaluation, results
from agegender.errors import AgegenderError


def write_run(folder, *, weights_kind="none", age_offset=0.0, seed=0):
    rng = np.random.default_rng(seed)
    ages = rng.integers(1, 90, 60)
    table = evaluation.predictions_table(
        [f"{a}_{i % 2}_{i % 5}_20170101.jpg" for i, a in enumerate(ages)],
        ages,
        ages + age_offset + rng.normal(0, 3, 60),
        np.arange(60) % 2,
        rng.uniform(0, 1, 60),
    )
    folder.mkdir(parents=True)
    table.to_csv(folder / "predictions.csv", index=False)
    summary = evaluation.summarize(table, resamples=50)
    (folder / "metrics.json").write_text(json.dumps({**summary, "best_epoch": 1}))
    pd.DataFrame(
        {
            "epoch": [0, 1],
            "stage": "train",
            "loss": [2.0, 1.0],
            "val_loss": [2.1, 1.5],
            "age_mae": [9.0, 7.0],
            "val_age_mae": [9.5, 8.0],
            "gender_accuracy": [0.6, 0.7],
            "val_gender_accuracy": [0.6, 0.65],
        }
    ).to_csv(folder / "history.csv", index=False)
    (folder / "provenance.json").write_text(
        json.dumps(
            {
                "weights": {"kind": weights_kind, "path": None, "md5": None},
                "wall_time_s": 90,
                "epochs_run": 2,
                "backend": "tensorflow",
                "devices": ["cpu:0"],
                "training_time_s": 80.0,
                "feature_extraction_s": 10.0,
                "parameters": {
                    "image_size": 64,
                    "data": {"train": {"images": 400}, "test": {"images": 60, "rows_sha256": "r"}},
                },
            }
        )
    )


@pytest.fixture
def runs(tmp_path):
    write_run(tmp_path / "smoke" / "custom_cnn")
    write_run(tmp_path / "smoke" / "resnet50_finetune", age_offset=10.0, seed=1)
    return results.load_profile(tmp_path, "smoke")


def test_profiles_load_in_model_order_and_flag_random_initialisation(runs):
    assert list(runs) == ["custom_cnn", "resnet50_finetune"]
    assert not runs["custom_cnn"].random_init and runs["resnet50_finetune"].random_init
    caption = results.weights_caption(runs)
    assert caption == (
        "Starting weights: custom_cnn: trained from scratch; resnet50_finetune: "
        "random initialisation (not transfer learning)."
    )


def test_headline_table_shows_values_with_their_intervals(runs):
    table = results.headline_table(runs)
    assert list(table.index) == ["custom_cnn", "resnet50_finetune"]
    mae = runs["custom_cnn"].metrics["confidence_intervals"]["age_mae"]
    assert table.loc["custom_cnn", "age MAE [95% CI]"] == (
        f"{mae['value']:.2f} [{mae['low']:.2f}, {mae['high']:.2f}]"
    )
    assert (
        table.loc["custom_cnn", "CS@5"] == f"{runs['custom_cnn'].metrics['overall']['age_cs5']:.3f}"
    )
    assert table.loc["custom_cnn", "weights"] == "from scratch"
    assert table.loc["resnet50_finetune", "weights"] == "random init (not transfer)"


def test_metrics_table_lists_every_metric_of_one_run(runs):
    table = results.metrics_table(runs["custom_cnn"])
    assert list(table.index) == [results.METRIC_LABELS[m] for m in results.METRICS]
    intervals = runs["custom_cnn"].metrics["confidence_intervals"]
    assert table.loc["age RMSE (years)", "95% CI"] == (
        f"[{intervals['age_rmse']['low']:.2f}, {intervals['age_rmse']['high']:.2f}]"
    )


def test_group_and_cost_tables(runs):
    bands = results.group_table(runs, "age_band", "age_mae")
    assert list(bands.index) == ["custom_cnn", "resnet50_finetune"]
    groups = pd.DataFrame(runs["custom_cnn"].metrics["by_group"]).query("grouping == 'age_band'")
    labels = [f"{g} (n={n})" for g, n in zip(groups["group"], groups["n"], strict=True)]
    assert list(bands.columns) == labels
    assert (bands.loc["resnet50_finetune"] > bands.loc["custom_cnn"]).all()  # ten years off
    cost = results.cost_table(runs)
    assert cost.loc["custom_cnn", "training time (min)"] == 1.5  # 80 s of epochs + 10 s features
    assert cost.loc["custom_cnn", "training images"] == 400
    assert cost.loc["custom_cnn", "epochs"] == "2 (best 2)"


def test_protocol_names_each_run_and_the_shared_test_images(runs):
    assert results.protocol(runs) == (
        "Protocol: models trained on 400 images at 64 px (epochs: custom_cnn 2, "
        "resnet50_finetune 2); all tested on the same 60 test images."
    )
    runs["resnet50_finetune"].provenance["parameters"]["image_size"] = 128
    assert results.protocol(runs) == (
        "Protocol: custom_cnn trained on 400 images at 64 px for 2 epochs; resnet50_finetune "
        "trained on 400 images at 128 px for 2 epochs; all tested on the same 60 test images."
    )


def test_runs_tested_on_different_images_are_not_compared(runs):
    results.check_same_test_images(runs)
    runs["resnet50_finetune"].provenance["parameters"]["data"]["test"]["rows_sha256"] = "other"
    with pytest.raises(AgegenderError, match="different images"):
        results.check_same_test_images(runs)


def test_missing_results_are_a_clear_error(tmp_path):
    with pytest.raises(AgegenderError, match="agegender run cpu"):
        results.load_profile(tmp_path, "cpu")
    (tmp_path / "cpu" / "custom_cnn").mkdir(parents=True)
    with pytest.raises(AgegenderError, match="lacks"):
        results.load_profile(tmp_path, "cpu")
