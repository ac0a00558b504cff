"""Training: a tiny model learns a synthetic signal; results files; resume; stages; features."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import itertools
import json
import math
from dataclasses import replace

import keras
import numpy as np
import pandas as pd
import pytest
from support import SIZE, TINY_CNN, config, loaders

import agegender.provenance
from agegender import evaluation, provenance
from agegender.models.builders import build
from agegender.models.finetune import base_of
from agegender.models.heads import DEX_BINS, assemble, heads
from agegender.models.layers import Augmentation
from agegender.models.specs import MODELS
from agegender.training.config import TrainingConfig
from agegender.training.experiment import run_experiment
from agegender.training.fit import compile_model, predict
from agegender.training.runtime import default_jit_compile, xla_allowed

pytestmark = pytest.mark.slow


class Interrupt(Exception):
    pass


class InterruptAfter(keras.callbacks.Callback):
    """Stands for a killed process: raises at the end of the given epoch."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise Interrupt(f"interrupted after epoch {epoch}")


class EpochsSeen(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


def test_tiny_cnn_learns_age_from_brightness_and_writes_results(tmp_path):
    train, val, test = loaders(n_train=96)
    experiment = run_experiment(
        "custom_cnn",
        train,
        val,
        test,
        results_dir=tmp_path / "results",
        work_dir=tmp_path / "work",
        config=config(epochs=12, learning_rate=1e-2),
        model_options=TINY_CNN,
        provenance={"profile": "test"},
    )
    history = experiment.history
    assert history["epoch"].tolist() == list(range(12))
    assert history["loss"].iloc[-1] < 0.5 * history["loss"].iloc[0]
    # better than always guessing the mean age of the training set
    guess = np.full(len(test.ages), train.ages.mean())
    assert experiment.metrics["overall"]["age_mae"] < 0.7 * evaluation.mae(test.ages, guess)

    results = tmp_path / "results"
    assert sorted(p.name for p in results.iterdir()) == [
        "history.csv",
        "metrics.json",
        "predictions.csv",
        "provenance.json",
    ]
    saved_history = pd.read_csv(results / "history.csv")
    for column in (
        "epoch",
        "stage",
        "learning_rate",
        "loss",
        "val_loss",
        "val_age_mae",
        "val_gender_accuracy",
        "val_gender_auc",
    ):
        assert column in saved_history
    predictions = pd.read_csv(results / "predictions.csv")
    assert list(predictions.columns) == list(evaluation.COLUMNS)
    assert predictions["file"].tolist() == list(test.files)
    assert predictions["age_true"].tolist() == list(test.ages)
    metrics = json.loads((results / "metrics.json").read_text())
    assert metrics["overall"]["n"] == len(test.rows)
    assert set(metrics["confidence_intervals"]) == set(evaluation.METRICS)
    assert {row["grouping"] for row in metrics["by_group"]} == {"age_band", "race", "gender"}
    assert metrics["best_epoch"] == int(saved_history["val_loss"].idxmin())
    provenance = json.loads((results / "provenance.json").read_text())
    assert provenance["profile"] == "test"
    assert provenance["backend"] == keras.backend.backend()
    assert provenance["weights"] == {"kind": "none", "path": None, "md5": None}
    assert provenance["seed"] == 0 and provenance["devices"]
    assert provenance["versions"]["keras"] == keras.__version__
    assert "git_commit" in provenance and provenance["wall_time_s"] > 0
    assert provenance["parameters"]["model_options"]["width"] == 8
    # the custom CNN compiles with XLA where it was measured faster and where the backend's
    # deterministic kernels allow it (TensorFlow's do not), and says which it did
    expected_xla = default_jit_compile(
        keras.backend.backend(), "custom_cnn", gpu=False, image_size=train.images.shape[1]
    )
    if expected_xla is True and not xla_allowed(keras.backend.backend()):
        expected_xla = False
    assert provenance["parameters"]["jit_compile"] == expected_xla
    assert (tmp_path / "work" / "best.keras").is_file()
    assert experiment.model_path == tmp_path / "work" / "best.keras"
    assert provenance["model_file"] == "best.keras"
    assert provenance["invocations"] == 1 and provenance["resumed"] is False
    assert " over " not in agegender.provenance.card(provenance)  # trained in one go


def test_interrupted_run_resumes_without_gaps_or_repeats(tmp_path):
    train, val, test = loaders()
    arguments = {
        "results_dir": tmp_path / "results",
        "work_dir": tmp_path / "work",
        "config": config(epochs=5),
        "model_options": TINY_CNN,
    }
    with pytest.raises(Interrupt):
        run_experiment(
            "custom_cnn", train, val, test, **arguments, callbacks=[InterruptAfter(epoch=2)]
        )
    state = json.loads((tmp_path / "work" / "state" / "train" / "state.json").read_text())
    assert state["next_epoch"] == 3 and not state["done"]
    assert set(state["callbacks"]) == {"early_stopping", "reduce_lr", "checkpoint"}
    watched = pd.read_csv(tmp_path / "work" / "state" / "train" / "history.csv")
    assert watched["epoch"].tolist() == [0, 1, 2]
    assert not (tmp_path / "results" / "history.csv").exists()

    seen = EpochsSeen()
    train, val, test = loaders()  # a new process has new loaders
    experiment = run_experiment("custom_cnn", train, val, test, **arguments, callbacks=[seen])
    assert seen.epochs == [3, 4]
    history = pd.read_csv(tmp_path / "results" / "history.csv")
    assert history["epoch"].tolist() == [0, 1, 2, 3, 4]
    assert history["loss"].iloc[:3].tolist() == pytest.approx(
        [row["loss"] for row in state["history"]]
    )
    assert experiment.provenance["resumed"] is True
    # the cost counts the epochs of both invocations, not only the second one's
    assert history["epoch_time_s"].gt(0).all()
    assert experiment.provenance["training_time_s"] == pytest.approx(history["epoch_time_s"].sum())
    assert not list((tmp_path / "work" / "state" / "train").glob("*.weights.h5"))
    # ... and the card says so, beside this invocation's own wall time
    assert experiment.provenance["invocations"] == 2
    assert "invocation" not in history  # kept in the saved state, not in the results
    total = provenance.duration(experiment.provenance["training_time_s"])
    assert f"training {total} over 2 invocations (resumed); this invocation " in provenance.card(
        experiment.provenance
    )

    # started again once finished, it trains no more and evaluates the same best model
    again = run_experiment("custom_cnn", *loaders(), **arguments, callbacks=[seen])
    assert seen.epochs == [3, 4]
    assert again.provenance["invocations"] == 3 and again.provenance["resumed"] is True
    pd.testing.assert_frame_equal(again.history, experiment.history)
    assert again.metrics["overall"] == experiment.metrics["overall"]


def test_changed_parameters_start_over(tmp_path):
    arguments = {
        "results_dir": tmp_path / "results",
        "work_dir": tmp_path / "work",
        "model_options": TINY_CNN,
    }
    with pytest.raises(Interrupt):
        run_experiment(
            "custom_cnn",
            *loaders(n_train=16),
            config=config(epochs=2),
            **arguments,
            callbacks=[InterruptAfter(epoch=0)],
        )
    seen = EpochsSeen()
    run_experiment(
        "custom_cnn",
        *loaders(n_train=16),
        config=config(epochs=2, seed=1),
        **arguments,
        callbacks=[seen],
    )
    assert seen.epochs == [0, 1]


def test_early_stopping_restores_the_best_epoch(tmp_path):
    train, val, test = loaders()
    experiment = run_experiment(
        "custom_cnn",
        train,
        val,
        test,
        results_dir=tmp_path / "r",
        work_dir=tmp_path / "w",
        config=config(
            epochs=30, learning_rate=0.3, early_stopping_patience=1, reduce_lr_patience=5
        ),
        model_options=TINY_CNN,
    )
    history = experiment.history
    assert len(history) < 30  # a learning rate this high stops improving quickly
    best = history["val_loss"].idxmin()
    assert experiment.metrics["best_epoch"] == best
    predicted = predict(experiment.model, val)
    # the returned model is the best epoch's: its validation age MAE is that epoch's
    assert evaluation.mae(predicted["age_true"], predicted["age_pred"]) == pytest.approx(
        history.loc[best, "val_age_mae"], rel=1e-3
    )


def fake_resnet50_finetune(*, image_size, channels=3, weights=None, seed=None, **head_options):
    """A tiny stand-in with ResNet-50's layer names, so the stages run in seconds."""
    inputs = keras.Input((image_size, image_size, 3))
    x = inputs
    for block in ("conv4_block1", "conv5_block1", "conv5_block2"):
        x = keras.layers.Conv2D(4, 3, padding="same", name=f"{block}_1_conv")(x)
        x = keras.layers.BatchNormalization(name=f"{block}_1_bn")(x)
    base = keras.Model(inputs, x, name="resnet50")
    base.trainable = False
    images = keras.Input((image_size, image_size, channels), name="image")
    extractor = keras.Model(images, base(images, training=False), name="extractor")
    head_model = heads(extractor.output.shape[1:], units=8)
    return assemble(extractor, head_model, name="resnet50_finetune")


def use_fake_resnet50(monkeypatch):
    real = MODELS["resnet50_finetune"]
    monkeypatch.setitem(MODELS, real.name, replace(real, builder=fake_resnet50_finetune))


def test_two_stages_unfreeze_and_continue_the_history(tmp_path, monkeypatch):
    use_fake_resnet50(monkeypatch)
    trainable_counts = []

    class CountTrainable(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            trainable_counts.append(len(self.model.trainable_weights))

    experiment = run_experiment(
        "resnet50_finetune",
        *loaders(),
        results_dir=tmp_path / "r",
        work_dir=tmp_path / "w",
        config=config(
            epochs=2, fine_tune_epochs=2, fine_tune_blocks=2, fine_tune_learning_rate=1e-4
        ),
        model_options={"weights": None},
        callbacks=[CountTrainable()],
    )
    history = experiment.history
    assert history["epoch"].tolist() == [0, 1, 2, 3]
    assert history["stage"].tolist() == ["train", "train", "fine_tune", "fine_tune"]
    assert history["learning_rate"].tolist() == pytest.approx([3e-3, 3e-3, 1e-4, 1e-4])
    head_weights = 2 * 2 + 2 * 2  # two dense layers per branch, kernel and bias each
    assert trainable_counts == [
        head_weights,
        head_weights + 2 * 2,
    ]  # + conv5_block1/2 kernels and biases
    base = base_of(experiment.model)
    assert not any(
        layer.trainable
        for layer in base.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    )


def test_interrupted_fine_tuning_resumes_in_its_stage(tmp_path, monkeypatch):
    use_fake_resnet50(monkeypatch)
    arguments = {
        "results_dir": tmp_path / "r",
        "work_dir": tmp_path / "w",
        "config": config(epochs=2, fine_tune_epochs=3, fine_tune_blocks=1),
        "model_options": {"weights": None},
    }
    with pytest.raises(Interrupt):
        run_experiment(
            "resnet50_finetune", *loaders(), **arguments, callbacks=[InterruptAfter(epoch=3)]
        )
    seen = EpochsSeen()
    experiment = run_experiment("resnet50_finetune", *loaders(), **arguments, callbacks=[seen])
    assert seen.epochs == [4]
    assert experiment.history["epoch"].tolist() == [0, 1, 2, 3, 4]
    assert experiment.history["stage"].tolist() == ["train"] * 2 + ["fine_tune"] * 3


def test_vgg16_heads_train_on_features_computed_once(tmp_path):
    train, val, test = loaders(n_train=16, n_val=8, n_test=8, size=32, batch_size=8)
    cache = tmp_path / "features"
    arguments = {
        "results_dir": tmp_path / "r",
        "feature_cache_dir": cache,
        "config": config(epochs=2),
        "model_options": {"weights": None, "units": 8, "pooling": "avg"},
    }
    experiment = run_experiment(
        "vgg16_features", train, val, test, work_dir=tmp_path / "w1", **arguments
    )
    cached = {path: path.stat().st_mtime_ns for path in cache.glob("*.npy")}
    assert len(cached) == 3  # train, val, test
    run_experiment(
        "vgg16_features", *loaders(16, 8, 8, 32, 8), work_dir=tmp_path / "w2", **arguments
    )
    assert {path: path.stat().st_mtime_ns for path in cache.glob("*.npy")} == cached
    # the saved end-to-end model predicts from images what the heads predicted from features
    end_to_end = keras.saving.load_model(experiment.model_path)
    assert experiment.model_path.name == "model.keras"
    assert base_of(end_to_end).name == "vgg16"
    predicted = predict(end_to_end, test)
    np.testing.assert_allclose(
        predicted["age_pred"], experiment.predictions["age_pred"], rtol=1e-4, atol=1e-3
    )


def test_mixed_precision_dex_run_keeps_float32_outputs_and_restores_the_policy(tmp_path):
    experiment = run_experiment(
        "custom_cnn",
        *loaders(n_train=16, n_val=8, n_test=8),
        results_dir=tmp_path / "r",
        work_dir=tmp_path / "w",
        config=config(epochs=1, mixed_precision=True, age_loss="huber", age_loss_weight=0.1),
        model_options={**TINY_CNN, "age_head": "dex"},
    )
    assert experiment.provenance["dtype_policy"] == "mixed_float16"
    assert keras.config.dtype_policy().name == "float32"
    outputs = experiment.model.predict(np.zeros((2, SIZE, SIZE, 3), "float32"), verbose=0)
    assert outputs["age"].dtype == np.float32 and outputs["gender"].dtype == np.float32
    assert experiment.model.get_layer("heads").get_layer("age_bins").units == DEX_BINS
    assert np.isfinite(experiment.history[["loss", "val_age_mae"]]).all().all()


def test_xla_is_on_where_it_was_measured_faster():
    def xla(backend, model, size, gpu=False):
        return default_jit_compile(backend, model, gpu=gpu, image_size=size)

    assert [xla("tensorflow", "resnet50_finetune", size) for size in (64, 128, 224)] == [
        False,
        True,
        True,
    ]
    assert xla("tensorflow", "custom_cnn", 64) and not xla("tensorflow", "vgg16_features", 128)
    assert xla("tensorflow", "resnet50_finetune", 64, gpu=True) and xla("jax", "vgg16_features", 32)
    assert xla("torch", "custom_cnn", 64) == "auto"


def test_compile_model_names_the_metrics():
    model = build("custom_cnn", image_size=SIZE, **TINY_CNN)
    compile_model(model, learning_rate=1e-3, age_loss="mse", age_loss_weight=0.1)
    train, _, _ = loaders(n_train=16)
    logs = model.fit(train, epochs=1, verbose=0).history
    assert {"loss", "age_loss", "gender_loss", "age_mae", "gender_accuracy", "gender_auc"} <= set(
        logs
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epochs": -1}, "Received: epochs=-1"),
        ({"epochs": 0}, "at least one epoch"),
        ({"age_loss": "l1"}, "Received: age_loss='l1'"),
        ({"learning_rate": 0}, "Received: learning_rate=0"),
        ({"reduce_lr_factor": 2}, "Received: reduce_lr_factor=2"),
        ({"schedule": "linear"}, "Received: schedule='linear'"),
        ({"weight_decay": -0.1}, "Received: weight_decay=-0.1"),
    ],
)
def test_config_is_checked(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainingConfig(**changes)


def test_run_arguments_are_checked(tmp_path):
    train, val, test = loaders(n_train=16)
    with pytest.raises(ValueError, match="fine-tuning stage"):
        run_experiment(
            "custom_cnn",
            train,
            val,
            test,
            results_dir=tmp_path,
            work_dir=tmp_path,
            config=config(fine_tune_epochs=1),
        )
    with pytest.raises(ValueError, match="without augmentation"):
        run_experiment(
            "vgg16_features",
            train,
            val,
            test,
            results_dir=tmp_path,
            work_dir=tmp_path,
            model_options={"weights": None, "augmentation": Augmentation()},
        )
    with pytest.raises(ValueError, match="Received: channels=1"):
        run_experiment(
            "custom_cnn",
            train,
            val,
            test,
            results_dir=tmp_path,
            work_dir=tmp_path,
            model_options={"channels": 1},
        )
    with pytest.raises(ValueError, match="must not shuffle"):
        run_experiment("custom_cnn", train, train, test, results_dir=tmp_path, work_dir=tmp_path)


@pytest.mark.parametrize(
    "recipe",
    [{}, {"optimizer": "adamw", "weight_decay": 0.05, "schedule": "cosine"}],
    ids=["adam-plateau", "adamw-cosine"],
)
def test_a_resumed_run_continues_exactly_as_the_uninterrupted_one(tmp_path, recipe):
    """Same weights, optimiser state (and the schedule's step), batch order and random streams
    (augmentation, dropout)."""
    options = {**TINY_CNN, "dropout": 0.3, "augmentation": Augmentation()}

    def run(folder, callbacks=()):
        return run_experiment(
            "custom_cnn",
            *loaders(),
            results_dir=folder / "r",
            work_dir=folder / "w",
            config=config(epochs=4, **recipe),
            model_options=options,
            callbacks=callbacks,
        )

    whole = run(tmp_path / "whole")
    with pytest.raises(Interrupt):
        run(tmp_path / "resumed", callbacks=[InterruptAfter(epoch=1)])
    resumed = run(tmp_path / "resumed")
    assert resumed.provenance["resumed"] is True
    columns = ["loss", "val_loss", "age_mae", "gender_accuracy"]
    pd.testing.assert_frame_equal(resumed.history[columns], whole.history[columns])
    assert resumed.metrics["overall"] == whole.metrics["overall"]


def test_a_cosine_schedule_decays_the_rate_every_epoch_towards_its_floor(tmp_path):
    run = run_experiment(
        "custom_cnn",
        *loaders(),
        results_dir=tmp_path / "r",
        work_dir=tmp_path / "w",
        config=config(epochs=4, schedule="cosine", min_learning_rate=1e-5),
        model_options=TINY_CNN,
    )
    rates = run.history["learning_rate"].tolist()
    assert all(later < earlier for earlier, later in itertools.pairwise(rates))
    # each epoch's rate is the one it starts at: 4 of the 16 steps' cosine per epoch
    floor, top = 1e-5, 3e-3
    assert rates == pytest.approx(
        [floor + (top - floor) * (1 + math.cos(math.pi * epoch / 4)) / 2 for epoch in range(4)]
    )
    assert run.provenance["parameters"]["config"]["schedule"] == "cosine"


def test_a_run_without_a_test_loader_reports_validation_only(tmp_path):
    train, val, _ = loaders()
    run = run_experiment(
        "custom_cnn",
        train,
        val,
        None,
        results_dir=tmp_path / "r",
        work_dir=tmp_path / "w",
        config=config(epochs=1),
        model_options=TINY_CNN,
    )
    assert run.metrics["split"] == "val"
    assert run.predictions["file"].tolist() == list(val.files)
    assert run.metrics["overall"] == run.metrics["validation"] | {"n": len(val.rows)}
    assert set(run.provenance["parameters"]["data"]) == {"train", "val"}


DETERMINISM_SCRIPT = """
import json, sys
sys.path.insert(0, {folder!r})
from support import TINY_CNN, config, loaders
from agegender.models.layers import Augmentation
from agegender.training.experiment import run_experiment
run = run_experiment("custom_cnn", *loaders(), results_dir={out!r} + "/r", work_dir={out!r} + "/w",
                     config=config(epochs=3),
                     model_options={{**TINY_CNN, "dropout": 0.3, "augmentation": Augmentation()}})
print(json.dumps({{"history": run.history[["loss", "val_loss"]].values.tolist(),
                  "ages": run.predictions["age_pred"].tolist(),
                  "deterministic": run.provenance["deterministic_kernels"]}}))
"""


def test_the_same_seed_gives_the_same_numbers_in_two_processes(tmp_path):
    """Seeded data order, seeded augmentation and dropout, and the backend's deterministic
    kernels: two fresh processes agree to the last bit."""
    import subprocess
    import sys
    from pathlib import Path

    outputs = []
    for name in ("a", "b"):
        script = DETERMINISM_SCRIPT.format(
            folder=str(Path(__file__).parents[1]), out=str(tmp_path / name)
        )
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        )
        outputs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert outputs[0] == outputs[1]
    assert outputs[0]["deterministic"] is (keras.backend.backend() in ("tensorflow", "jax"))
