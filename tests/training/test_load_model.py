"""Loading a trained model in one call: from its file, its results folder or its work folder."""

import json
import subprocess
import sys

import numpy as np
import pytest
from support import SIZE, TINY_CNN

import agegender
from agegender.config import Paths
from agegender.errors import AgegenderError
from agegender.models.builders import build
from agegender.models.layers import Augmentation


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny custom CNN (with the project's own layers) saved where a cpu run keeps it, and
    its results folder; returns the project's folders."""
    root = tmp_path_factory.mktemp("project")
    paths = Paths(root=root, data=root / "data")
    model = build("custom_cnn", image_size=SIZE, augmentation=Augmentation(), **TINY_CNN)
    work = paths.run_work("cpu", "custom_cnn")
    work.mkdir(parents=True)
    model.save(work / "best.keras")
    results = paths.run_results("cpu", "custom_cnn")
    results.mkdir(parents=True)
    record = {"profile": "cpu", "parameters": {"model": "custom_cnn"}, "model_file": "best.keras"}
    (results / "provenance.json").write_text(json.dumps(record))
    return paths, model


def test_a_model_loads_from_its_file_its_results_or_its_work_folder(saved):
    paths, model = saved
    images = np.random.default_rng(0).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    expected = model.predict(images, verbose=0)
    results = paths.run_results("cpu", "custom_cnn")
    for where in (
        paths.run_work("cpu", "custom_cnn") / "best.keras",
        results,  # results/cpu/custom_cnn
        paths.run_work("cpu", "custom_cnn"),
    ):
        loaded = agegender.load_model(where, paths)
        outputs = loaded.predict(images, verbose=0)
        np.testing.assert_allclose(outputs["age"], expected["age"], rtol=1e-5, atol=1e-4)


def test_a_results_folder_written_before_runs_named_their_model_file_maps_to_its_work_folder(
    saved,
):
    paths, _ = saved
    folder = paths.run_results("cpu", "studies") / "seeds" / "seed_1"
    folder.mkdir(parents=True)
    (folder / "provenance.json").write_text(json.dumps({"parameters": {"model": "vgg16_features"}}))
    from agegender.models.saved import model_file

    with pytest.raises(AgegenderError) as missing:
        model_file(folder, paths)
    expected = paths.run_work("cpu", "studies/seeds/seed_1") / "model.keras"
    assert str(expected) in str(missing.value)


def test_a_missing_model_says_where_models_live_and_how_to_train_one(saved):
    paths, _ = saved
    with pytest.raises(AgegenderError) as missing:
        agegender.load_model(paths.run_results("gpu", "custom_cnn"), paths)
    message = str(missing.value)
    assert "data/work/<profile>/<model>/best.keras" in message
    assert "agegender run <profile> --only <model>" in message


def test_keras_own_loader_reads_the_projects_models_after_importing_the_package(saved):
    paths, _ = saved
    path = paths.run_work("cpu", "custom_cnn") / "best.keras"
    code = f"import keras, agegender; print(keras.saving.load_model({str(path)!r}).name)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
