"""The constant baseline: fitted on the training labels, tested on the models' test rows, read
and tabled beside the models, and named in words when a model does not beat it."""

import json

import numpy as np
import pandas as pd
import pytest
from support import write_run

from agegender import baselines, evaluation
from agegender.data.dataset import prepare
from agegender.errors import AgegenderError
from agegender.files import rows_sha256
from agegender.results import store, summary, tables
from agegender.results.store import RunResults


def test_the_constants_are_the_median_age_and_the_share_of_women():
    train = pd.DataFrame({"age": [1, 30, 31, 90], "gender": [0, 1, 1, 1]})
    assert baselines.fit_constant(train) == {
        "age": 30.5,
        "female_share": 0.75,
        "fitted_on_images": 4,
    }


@pytest.fixture
def data(utkface_folder, project):
    folder, _ = utkface_folder
    return prepare(project, str(folder))


def test_the_baseline_is_tested_on_the_models_rows_and_reads_like_a_run(data, project):
    folder = baselines.evaluate_on_utkface(data, profile="smoke", bootstrap_resamples=20)
    assert folder == project.run_results("smoke", "baseline_constant")
    run = store.load_baselines("smoke", project)["baseline_constant"]
    assert run.baseline and not run.trained and run.history is None
    test = data.split.iloc[data.rows("test")]
    train = data.split.iloc[data.rows("train")]
    assert run.predictions["file"].tolist() == test["file"].tolist()
    assert (run.predictions["age_pred"] == np.median(train["age"])).all()
    majority = int(train["gender"].mean() >= 0.5)
    assert (run.predictions["gender_pred"] == majority).all()
    overall = run.metrics["overall"]
    assert overall["gender_accuracy"] == pytest.approx((test["gender"] == majority).mean())
    assert overall["gender_auc"] == pytest.approx(0.5)
    assert run.provenance["baseline"]["fitted_on_images"] == len(train)
    assert store.load_peers("smoke", project) == {}

    write_run(project.run_results("smoke", "custom_cnn"))
    models = store.load_models("smoke", project)
    everyone = {**models, "baseline_constant": run}
    assert tables.headline_table(everyone).loc["baseline_constant", "weights"] == "baseline"
    assert list(tables.cost_table(everyone).index) == ["custom_cnn"]
    assert "constant baseline fitted on the training split" in tables.protocol(everyone)


def result(name, mae, accuracy, **provenance):
    overall = {"age_mae": mae, "gender_accuracy": accuracy}
    return RunResults(name, None, {"overall": overall}, pd.DataFrame(), provenance)


def test_models_that_do_not_beat_the_baseline_are_named():
    constant = {"baseline_constant": result("baseline_constant", 12.0, 0.52, baseline={})}
    runs = {
        "custom_cnn": result("custom_cnn", 8.0, 0.80),
        "vgg16_features": result("vgg16_features", 12.5, 0.60),
        "resnet50_finetune": result("resnet50_finetune", 13.0, 0.50),
    }
    sentence = summary.baseline_sentence(runs, constant)
    assert sentence.startswith("A constant guess")
    assert "12.00 years and a gender accuracy of 0.520." in sentence
    assert "vgg16_features and resnet50_finetune do not beat it on age MAE." in sentence
    assert "resnet50_finetune does not beat it on gender accuracy." in sentence
    assert summary.baseline_sentence({"custom_cnn": runs["custom_cnn"]}, constant).endswith(
        "Every model beats it on both."
    )
    assert summary.baseline_sentence(runs, {}) == ""


def test_published_baseline_results_are_not_replaced_unless_asked(data, project, monkeypatch):
    import subprocess

    folder = baselines.evaluate_on_utkface(data, profile="cpu", bootstrap_resamples=20)
    before = (folder / "provenance.json").read_bytes()
    for command in (["init", "-q"], ["add", "results"]):
        subprocess.run(["git", *command], cwd=project.root, check=True, capture_output=True)
    monkeypatch.delenv(store.OVERWRITE, raising=False)
    with pytest.raises(AgegenderError, match="`agegender run cpu --only comparison`"):
        baselines.evaluate_on_utkface(data, profile="cpu", bootstrap_resamples=20)
    assert (folder / "provenance.json").read_bytes() == before
    with store.replacing_published():  # what `agegender run` does
        baselines.evaluate_on_utkface(data, profile="cpu", bootstrap_resamples=20)


def test_the_comparison_gathers_every_run_tested_on_the_same_images(data, project):
    from agegender import comparison

    test = data.split.iloc[data.rows("test")]
    for model, offset in (("custom_cnn", 0.0), ("vgg16_features", 1.0)):
        folder = project.run_results("smoke", model)
        write_run(folder, age_offset=offset)
        tested = evaluation.predictions_table(
            test["file"], test["age"], test["age"] + offset, test["gender"], test["gender"] * 0.8
        )
        tested.to_csv(folder / "predictions.csv", index=False)  # the split's test rows
        record = json.loads((folder / "provenance.json").read_text())
        rows = data.rows("test")
        record["parameters"]["data"]["test"] = {
            "images": len(rows),
            "rows_sha256": rows_sha256(rows),
        }
        record["dataset_sha256"], record["split_sha256"] = "d" * 64, "s" * 64
        (folder / "provenance.json").write_text(json.dumps(record))
    compared = comparison.gather("smoke", evaluate_peer=False, data=data)
    assert list(compared.models) == ["custom_cnn", "vgg16_features"]
    assert list(compared.baselines) == ["baseline_constant"] and compared.peers == {}
    assert compared.peer_missing == "`evaluate_peer` is off"
    assert list(compared.all) == ["custom_cnn", "vgg16_features", "baseline_constant"]
    record = compared.record()
    assert record["parameters"]["evaluate_peer"] is False
    assert record["dataset_sha256"] == "d" * 64  # the models' data
