"""Data-parallel training (`agegender.training.distribution`): two devices train as one device
does on the same global batch, on JAX (`keras.distribution.DataParallel`) and TensorFlow
(`tf.distribute.MirroredStrategy`), resume included; the checks made before any work; loaders
whose batches split evenly; what the provenance says.

Two devices on this CPU: virtual ones, made before the backend starts, so each backend's runs go
in a subprocess (this file, run as a script: ``python test_distribution.py BACKEND OUT.json``).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
# Two devices must give what one gives on the same global batch: float sums are reduced in
# another order, so equal within this relative tolerance (measured differences: about 1e-6).
RTOL = 1e-3
EPOCHS = 2
RATE = 3e-3  # the per-device rate; one device on the same global batch gets √2 times it
FINE_TUNE_RATE = 1e-4
PER_BATCH_ON_TENSORFLOW = ("val_age_loss", "val_gender_loss")


def _start(backend: str, tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """Train in a subprocess with two virtual CPU devices (`main`)."""
    out = tmp_path / f"{backend}.json"
    env = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, str(Path(__file__).resolve()), backend, str(out), str(tmp_path)]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    return process, out


def _finish(started: tuple[subprocess.Popen, Path]) -> dict:
    process, out = started
    _, stderr = process.communicate(timeout=900)
    assert process.returncode == 0, stderr[-4000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def backends(tmp_path_factory):
    """Both backends' subprocesses, started together (they overlap on a multi-core machine)."""
    pytest.importorskip("jax")
    started = {
        backend: _start(backend, tmp_path_factory.mktemp(backend))
        for backend in ("jax", "tensorflow")
    }
    return {backend: _finish(process) for backend, process in started.items()}


@pytest.fixture(scope="module")
def jax_runs(backends):
    return backends["jax"]


@pytest.fixture(scope="module")
def tensorflow_runs(backends):
    return backends["tensorflow"]


def _assert_same(one: dict, two: dict, *, unless=()) -> None:
    """Same history (every loss and metric of every epoch, `unless` named) and the same test
    predictions."""
    assert one["history"].keys() == two["history"].keys()
    for key, values in one["history"].items():
        if key in ("epoch_time_s", "stage", "epoch", *unless):
            continue
        np.testing.assert_allclose(two["history"][key], values, rtol=RTOL, err_msg=key)
    np.testing.assert_allclose(two["age_pred"], one["age_pred"], rtol=RTOL, atol=1e-3)
    np.testing.assert_allclose(two["gender_prob"], one["gender_prob"], rtol=RTOL, atol=1e-4)
    assert one["files"] == two["files"]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["custom_cnn", "vgg16_features"])
def test_two_jax_devices_train_as_one_on_the_same_global_batch(jax_runs, model):
    runs = jax_runs[model]
    one, two = runs["one"], runs["two"]
    assert one["distribution"]["strategy"] is None and one["distribution"]["devices"] == ["cpu:0"]
    assert two["distribution"] == {
        "devices": ["cpu:0", "cpu:1"],
        "strategy": "keras.distribution.DataParallel",
        "global_batch_size": 16,
        "per_device_batch_size": 8,
        "learning_rate_scaling": "sqrt",
        "learning_rate_factor": round(math.sqrt(2), 6),
        "learning_rates": {"train": pytest.approx(RATE * math.sqrt(2))},
    }
    _assert_same(one, two)
    assert len(two["files"]) == 19  # the padded last batch's copies are not predictions
    # it learned something: the loss fell
    assert two["history"]["loss"][-1] < two["history"]["loss"][0]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_resnet50s_fine_tuning_stage_trains_on_two_devices_as_on_one(backends, backend):
    """The second stage starts from the first stage's best model, loaded under the strategy, with
    its top block unfrozen."""
    runs = backends[backend]["resnet50_finetune"]
    one, two = runs["one"], runs["two"]
    assert two["history"]["stage"] == ["train", "fine_tune"]
    assert two["distribution"]["learning_rates"] == {
        "train": pytest.approx(RATE * math.sqrt(2)),
        "fine_tune": pytest.approx(FINE_TUNE_RATE * math.sqrt(2)),
    }
    _assert_same(one, two, unless=PER_BATCH_ON_TENSORFLOW if backend == "tensorflow" else ())


@pytest.mark.slow
def test_an_interrupted_two_device_jax_run_resumes_as_if_uninterrupted(jax_runs):
    resumed, uninterrupted = jax_runs["resumed"], jax_runs["custom_cnn"]["two"]
    assert resumed["interrupted"] and resumed["resumed"]
    assert resumed["history"]["epoch"] == list(range(EPOCHS))
    _assert_same(uninterrupted, resumed)


@pytest.mark.slow
def test_two_tensorflow_devices_train_as_one_on_the_same_global_batch(tensorflow_runs):
    runs = tensorflow_runs["custom_cnn"]
    one, two = runs["one"], runs["two"]
    assert two["distribution"]["strategy"] == "tf.distribute.MirroredStrategy"
    assert two["distribution"]["devices"] == ["cpu:0", "cpu:1"]
    # Keras' TensorFlow trainer weighs each batch's per-output loss metric by the batch's static
    # size, unknown in its graph, so every batch counts once: with a partial last batch (19 and
    # 21 images here), val_age_loss and val_gender_loss are not means over the images, on one
    # device as on two (val_loss and the metrics are, equal here).
    _assert_same(one, two, unless=PER_BATCH_ON_TENSORFLOW)
    # batch normalisation was synchronised while training, not in the saved model
    assert two["saved_synchronized"] is False


@pytest.mark.slow
def test_an_interrupted_two_device_tensorflow_run_resumes_as_if_uninterrupted(tensorflow_runs):
    resumed = tensorflow_runs["resumed"]
    assert resumed["interrupted"] and resumed["resumed"]
    _assert_same(tensorflow_runs["custom_cnn"]["two"], resumed, unless=PER_BATCH_ON_TENSORFLOW)


# Checks made before any work, and the loaders (in this process, one device).


@pytest.mark.parametrize("value", ["two", "ALL", 0, -1, 1.5, True, None])
def test_a_devices_value_other_than_all_or_a_positive_integer_is_refused(value):
    from agegender.training.config import TrainingConfig
    from agegender.training.utkface import check_settings

    with pytest.raises(ValueError, match="devices must be"):
        TrainingConfig(devices=value)
    with pytest.raises(ValueError, match=r"devices must be \"all\""):
        check_settings("custom_cnn", {"image_size": 32, "devices": value})


def test_more_devices_than_visible_are_refused_and_all_is_one_device_without_accelerators():
    from agegender.errors import AgegenderError
    from agegender.training.distribution import resolve, visible_devices

    visible = visible_devices()
    with pytest.raises(AgegenderError, match=f"devices={len(visible) + 1} asks for more"):
        resolve(len(visible) + 1)
    if not any(d.startswith(("gpu", "tpu")) for d in visible):
        everything = resolve("all")
        assert everything.count == 1 and everything.strategy is None
        assert everything.learning_rate(1e-3) == 1e-3


def test_train_on_utkface_refuses_too_many_devices_before_reading_any_data():
    from agegender.errors import AgegenderError
    from agegender.training.utkface import train_on_utkface

    class NoData:  # any use of the data would fail differently
        paths = None

    with pytest.raises(AgegenderError, match="asks for more devices"):
        train_on_utkface(NoData(), "custom_cnn", profile="test-devices", image_size=32, devices=64)


def _loader(n, *, shuffle, multiple_of, batch_size=8):
    from support import synthetic_faces

    from agegender.data.loader import FaceBatches

    images, ages, genders, files = synthetic_faces(n, size=4)
    return FaceBatches(
        images,
        np.arange(n),
        ages,
        genders,
        files,
        batch_size=batch_size,
        shuffle=shuffle,
        multiple_of=multiple_of,
    )


def test_a_split_evaluation_loader_pads_its_last_batch_with_weightless_copies():
    loader = _loader(21, shuffle=False, multiple_of=2)
    assert len(loader) == 3 and [loader.real_size(i) for i in range(3)] == [8, 8, 5]
    images, labels, weights = loader[2]
    assert len(images) == 6 and np.array_equal(images[5], images[4])  # one copy of the last
    # every own image weighs (images served) / (own images) = 22 / 21, the copy 0
    np.testing.assert_allclose(weights["age"], [22 / 21] * 5 + [0.0])
    assert weights["gender"] is weights["age"]
    assert np.array_equal(labels["age"][:5], loader.ages[16:])
    # what Keras averages over an epoch (batch losses weighted by batch size) is exact
    errors = np.abs(loader.ages - 30.0)
    batches = [loader[i] for i in range(len(loader))]
    sums = [np.sum(w["age"] * np.abs(y["age"] - 30.0)) for _, y, w in batches]
    assert sum(sums) / sum(len(x) for x, _, _ in batches) == pytest.approx(errors.mean())


def test_a_split_training_loader_leaves_out_an_uneven_remainder_each_epoch():
    loader = _loader(21, shuffle=True, multiple_of=2)
    sizes = [len(loader[i][0]) for i in range(len(loader))]
    assert sizes == [8, 8, 4] and len(loader[0]) == 2  # images and labels, no weights
    exactly = _loader(20, shuffle=True, multiple_of=4, batch_size=4)
    assert [len(exactly[i][0]) for i in range(len(exactly))] == [4] * 5
    # split_over: the same rows in the same order, the epoch kept
    plain = _loader(21, shuffle=True, multiple_of=1)
    plain.set_epoch(3)
    split = plain.split_over(2)
    assert split.epoch == 3 and split.multiple_of == 2 and plain.split_over(1) is plain
    assert np.array_equal(split[0][0], plain[0][0])
    with pytest.raises(ValueError, match="divides batch_size"):
        _loader(8, shuffle=False, multiple_of=3)


def test_the_card_names_the_devices_used_and_the_engine():
    from agegender import provenance

    record = {
        "backend": "jax",
        "devices": ["gpu:0", "gpu:1", "gpu:2"],
        "distribution": {
            "devices": ["gpu:0", "gpu:1"],
            "strategy": "keras.distribution.DataParallel",
            "global_batch_size": 256,
            "per_device_batch_size": 128,
        },
    }
    assert provenance.devices_words(record) == (
        "gpu:0, gpu:1 (of 3 visible: gpu:0, gpu:1, gpu:2), data parallel "
        "(keras.distribution.DataParallel; global batch 256, 128 per device; learning rate "
        "multiplied by √2)"
    )
    one = {"backend": "tensorflow", "devices": ["cpu:0"], "distribution": {"devices": ["cpu:0"]}}
    assert provenance.devices_words(one) == "cpu:0"
    assert provenance.devices_words({"devices": ["cpu:0"]}) == "cpu:0"  # a record from before


# The subprocess: trains with two virtual devices, then as one, and writes what the tests read.


def _experiment(name, work, *, devices, rate, callbacks=(), size=32, **changes):
    import keras
    from support import TINY_CNN, config, loaders

    from agegender.models.layers import Augmentation
    from agegender.training.experiment import run_experiment

    train, val, test = loaders(n_train=64, n_val=21, n_test=19, size=size, batch_size=16)
    # On TensorFlow each replica draws augmentation's random numbers for its own share of the
    # batch, from the same state (every share is transformed alike), so two devices augment
    # differently from one: equal only without it.
    augmentation = Augmentation() if keras.backend.backend() == "jax" else None
    options = (
        {**TINY_CNN, "augmentation": augmentation}
        if name == "custom_cnn"
        else {"weights": None, "units": 16, "dropout": 0.0}
    )
    settings = {"epochs": EPOCHS, "learning_rate": rate, "devices": devices, **changes}
    return run_experiment(
        name,
        train,
        val,
        test,
        results_dir=work / "results",
        work_dir=work / "work",
        config=config(bootstrap_resamples=5, **settings),
        model_options=options,
        callbacks=callbacks,
    )


def _summary(experiment) -> dict:
    history = experiment.history
    return {
        "history": {key: history[key].tolist() for key in history.columns},
        "age_pred": experiment.predictions["age_pred"].tolist(),
        "gender_prob": experiment.predictions["gender_prob"].tolist(),
        "files": experiment.predictions["file"].tolist(),
        "distribution": experiment.provenance["distribution"],
        "resumed": experiment.provenance["resumed"],
    }


def _batch_norm_flags(config) -> list[bool]:
    """The ``synchronized`` option of every batch normalisation layer in a saved model's config."""
    if isinstance(config, list):
        return [flag for item in config for flag in _batch_norm_flags(item)]
    if not isinstance(config, dict):
        return []
    own = (
        [config["config"]["synchronized"]]
        if config.get("class_name") == "BatchNormalization"
        else []
    )
    return own + [flag for value in config.values() for flag in _batch_norm_flags(value)]


def main(backend: str, out: str, scratch: str) -> None:
    if backend == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
    import keras

    class Interrupt(Exception):
        pass

    class InterruptAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                raise Interrupt

    scratch = Path(scratch)
    models = ["custom_cnn", "vgg16_features"] if backend == "jax" else ["custom_cnn"]
    results = {}
    for name in models:
        two = _experiment(name, scratch / name / "two", devices=2, rate=RATE)
        one = _experiment(name, scratch / name / "one", devices=1, rate=RATE * math.sqrt(2))
        results[name] = {"one": _summary(one), "two": _summary(two)}
        if name == "custom_cnn" and backend == "tensorflow":
            with zipfile.ZipFile(two.model_path) as saved:
                flags = _batch_norm_flags(json.loads(saved.read("config.json")))
            results[name]["two"]["saved_synchronized"] = any(flags) if flags else None
    # ResNet-50's two stages: heads, then its top block unfrozen (a model loaded from the first
    # stage's best, under the strategy).
    finetune = {"epochs": 1, "fine_tune_epochs": 1, "fine_tune_blocks": 1}
    two = _experiment(
        "resnet50_finetune",
        scratch / "ft2",
        devices=2,
        rate=RATE,
        fine_tune_learning_rate=FINE_TUNE_RATE,
        **finetune,
    )
    one = _experiment(
        "resnet50_finetune",
        scratch / "ft1",
        devices=1,
        rate=RATE * math.sqrt(2),
        fine_tune_learning_rate=FINE_TUNE_RATE * math.sqrt(2),
        **finetune,
    )
    results["resnet50_finetune"] = {"one": _summary(one), "two": _summary(two)}
    work = scratch / "resumed"
    interrupted = False
    try:
        _experiment(
            "custom_cnn", work, devices=2, rate=RATE, callbacks=[InterruptAfterFirstEpoch()]
        )
    except Interrupt:
        interrupted = True
    resumed = _experiment("custom_cnn", work, devices=2, rate=RATE)
    results["resumed"] = {**_summary(resumed), "interrupted": interrupted}
    Path(out).write_text(json.dumps(results))


if __name__ == "__main__":
    main(*sys.argv[1:])
