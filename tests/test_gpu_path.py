"""The gpu profile's code path, as a first GPU user meets it, exercised on a CPU: every model
chapter's training through `train_on_utkface` with the gpu profile's settings (its image sizes:
128 px, 224 for ResNet-50; its fine-tuning blocks, loss weights, augmentation), only scaled down
(8 images per split, batches of 4, one epoch per stage), on the JAX backend (the GPU machine's),
with mixed precision and XLA forced on (what `default_precision` and `default_jit_compile` give
on a GPU) and ImageNet weights loaded the way the real files are.

The ImageNet files are stand-ins: the same keras.applications architectures with random weights,
saved in the legacy HDF5 layout of the real files under their exact names in
``$KERAS_HOME/models/`` (a temporary folder). Their md5 differs from the published one, so the
subprocess, and only it, puts the stand-ins' md5 into `IMAGENET_FILES`: the same code then finds,
checks and loads them as it would the real files, and users' md5 check is untouched.

It runs as a script in a subprocess (``python test_gpu_path.py OUT.json SCRATCH``) so that
KERAS_BACKEND=jax and KERAS_HOME are set before Keras starts, and TensorFlow cannot be imported
there, as on the GPU machine (its Python has JAX and no TensorFlow).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
BOOK = HERE.parent / "book"
CHAPTERS = {
    "custom_cnn": "02_custom_cnn",
    "vgg16_features": "03_vgg16_features",
    "resnet50_finetune": "04_resnet50_finetune",
}
# The gpu profile, scaled down: the rest (image sizes, options) is the profile's.
SCALED = {
    "max_train_images": 8,
    "max_eval_images": 8,
    "batch_size": 4,
    "epochs": 1,
    "fine_tune_epochs": 1,
    "bootstrap_resamples": 5,
    "verbose": 0,
    "mixed_precision": True,
    "jit_compile": True,
}


@pytest.fixture(scope="module")
def gpu_path(tmp_path_factory):
    pytest.importorskip("jax")
    scratch = tmp_path_factory.mktemp("gpu-path")
    out = scratch / "out.json"
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "KERAS_HOME": str(scratch / "keras"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    for name in ("UTKFACE_SOURCE", "AGEGENDER_ROOT", "AGEGENDER_DATA_DIR"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), str(out), str(scratch)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert done.returncode == 0, done.stderr[-6000:]
    return json.loads(out.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("model", list(CHAPTERS))
def test_the_gpu_profiles_training_runs_on_jax_with_mixed_precision_xla_and_imagenet_files(
    gpu_path, model
):
    run = gpu_path[model]
    provenance = run["provenance"]
    parameters = provenance["parameters"]
    assert provenance["backend"] == "jax"
    assert parameters["image_size"] == (224 if model == "resnet50_finetune" else 128)
    assert parameters["mixed_precision"] is True and provenance["dtype_policy"] == "mixed_float16"
    assert parameters["jit_compile"] is True
    if model != "custom_cnn":
        weights = provenance["weights"]
        assert weights["kind"] == "imagenet"
        assert Path(weights["path"]).name == run["imagenet_file"]
        assert weights["md5"] == run["stand_in_md5"]
        assert run["base_weights_loaded"]  # the base holds the stand-in's values
    stages = {"resnet50_finetune": ["train", "fine_tune"]}.get(model, ["train"])
    assert run["stages"] == stages
    assert run["finite"]  # losses and predictions are numbers, not NaN
    assert run["n_test"] == 8 and run["outputs"] == ["float32", "float32"]
    assert run["reloaded_matches"]  # the saved model predicts what the run predicted
    assert gpu_path["tensorflow_imported"] is False


# The subprocess.


def _stand_ins(models_dir: Path) -> dict[str, str]:
    """Random-weight VGG16 and ResNet-50 bases saved as the real ImageNet files are (legacy
    HDF5, by layer), under their names; returns their md5 by base."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    from agegender.files import file_digest
    from agegender.models.weights import IMAGENET_FILES

    models_dir.mkdir(parents=True, exist_ok=True)
    applications = {"vgg16": keras.applications.VGG16, "resnet50": keras.applications.ResNet50}
    digests = {}
    for base, application in applications.items():
        model = application(weights=None, include_top=False, input_shape=(32, 32, 3))
        path = models_dir / IMAGENET_FILES[base].file
        with h5py.File(path, "w") as file:
            legacy_h5_format.save_weights_to_hdf5_group(file, model)
        digests[base] = file_digest(path, "md5")
    return digests


class NoTensorFlow:
    """An import hook that makes TensorFlow unimportable, as on the GPU machine."""

    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError("TensorFlow is not installed on the GPU machine")
        return None


def main(out: str, scratch: str) -> None:
    sys.meta_path.insert(0, NoTensorFlow())
    import ast
    import dataclasses

    scratch = Path(scratch)
    root = scratch / "project"
    root.mkdir()
    for marker in ("_toc.yml", "pyproject.toml"):
        (root / marker).write_text("")
    os.environ["AGEGENDER_ROOT"] = str(root)

    import h5py
    import keras
    import numpy as np
    from support import make_utkface

    from agegender import runner
    from agegender.config import Paths
    from agegender.data.dataset import prepare
    from agegender.models import weights as weights_module
    from agegender.models.builders import check_options, load_checkpoint
    from agegender.models.finetune import base_of
    from agegender.training.utkface import check_settings, setting_names, train_on_utkface

    digests = _stand_ins(Path(os.environ["KERAS_HOME"]) / "models")
    for base, md5 in digests.items():  # this process only: the stand-ins pass the md5 check
        files = weights_module.IMAGENET_FILES
        files[base] = dataclasses.replace(files[base], md5=md5)

    make_utkface(scratch / "source" / "UTKFace")
    data = prepare(Paths.default(), str(scratch / "source" / "UTKFace"))
    profile = runner.load_profile("gpu")
    results = {}
    for model, chapter in CHAPTERS.items():
        # What the chapter passes: its parameters cell, with the profile's values over it.
        declared = runner.declared_parameters(BOOK / f"{chapter}.ipynb")
        values = {name: ast.literal_eval(about["default"]) for name, about in declared.items()}
        profiled = {**profile["parameters"], **profile["chapters"].get(chapter, {})}
        values |= {k: v for k, v in profiled.items() if k in values or k == "devices"}
        values = {k: v for k, v in values.items() if k != "profile"} | SCALED
        if model != "resnet50_finetune":
            values.pop("fine_tune_epochs")
        assert set(values) <= setting_names(model), set(values) - setting_names(model)
        check_settings(model, values)  # what `agegender run gpu` checks before any chapter
        if values.get("weights") == "imagenet":
            check_options(model, image_size=values["image_size"], weights="imagenet")
        experiment = train_on_utkface(data, model, profile="gpu-path", **values)
        predictions = experiment.predictions
        reloaded = load_checkpoint(experiment.model_path)
        loader = data.batches(
            "test", size=values["image_size"], batch_size=4, max_images=8, seed=values["seed"]
        )
        again = reloaded.predict(loader[0][0], verbose=0)
        run = {
            "provenance": experiment.provenance,
            "stages": list(dict.fromkeys(experiment.history["stage"])),
            "finite": bool(
                np.isfinite(experiment.history.select_dtypes("number")).all().all()
                and np.isfinite(predictions[["age_pred", "gender_prob"]]).all().all()
            ),
            "n_test": len(predictions),
            "outputs": [str(np.asarray(again[n]).dtype) for n in ("age", "gender")],
            "reloaded_matches": bool(
                np.allclose(
                    np.ravel(again["age"]), predictions["age_pred"][:4], rtol=1e-2, atol=0.05
                )
            ),
        }
        base = base_of(experiment.model)
        if base is not None:
            spec = weights_module.IMAGENET_FILES[base.name]
            layer = next(layer for layer in base.layers if layer.weights)
            with h5py.File(Path(os.environ["KERAS_HOME"]) / "models" / spec.file) as file:
                group = file[layer.name]
                stored = np.asarray(group[group.attrs["weight_names"][0]])
            # the first convolution is frozen in every stage: it still holds the file's values
            run["base_weights_loaded"] = bool(
                np.allclose(keras.ops.convert_to_numpy(layer.kernel), stored)
            )
            run["imagenet_file"] = spec.file
            run["stand_in_md5"] = spec.md5
        results[model] = run
    results["tensorflow_imported"] = "tensorflow" in sys.modules
    Path(out).write_text(json.dumps(results, default=str))


if __name__ == "__main__":
    main(*sys.argv[1:])
