"""The model table: every model's facts in one place, consistent with its builder."""

import inspect
import subprocess
import sys

import pytest

from agegender.models import specs
from agegender.models.specs import MODELS, ModelSpec
from agegender.training.runtime import default_jit_compile


@pytest.mark.parametrize("name", specs.model_names())
def test_every_builder_defaults_to_its_specs_weights(name):
    model = specs.spec(name)
    weights = inspect.signature(model.build_function()).parameters["weights"]
    assert weights.default == model.default_weights
    assert (model.default_weights == "imagenet") == model.transfer


def test_the_table_holds_the_three_models_of_the_book():
    assert specs.model_names() == ("custom_cnn", "vgg16_features", "resnet50_finetune")
    assert [m.name for m in MODELS.values() if m.on_features] == ["vgg16_features"]
    assert [m.name for m in MODELS.values() if m.fine_tunes] == ["resnet50_finetune"]


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_every_model_has_a_runtime_default_on_every_backend(backend):
    for name in specs.model_names():
        for gpu in (False, True):
            assert default_jit_compile(backend, name, gpu=gpu, image_size=64) in (
                True,
                False,
                "auto",
            )


def test_registering_refuses_a_taken_name_and_unknown_stages():
    with pytest.raises(ValueError, match="exists already"):
        specs.register(ModelSpec("custom_cnn", "x:y", "again"))
    with pytest.raises(ValueError, match="stages"):
        specs.register(ModelSpec("odd", "x:y", "odd", stages=("fine_tune",)))
    with pytest.raises(ValueError, match="base"):
        specs.register(ModelSpec("odd", "x:y", "odd", stages=("train", "fine_tune")))
    assert "odd" not in MODELS
    with pytest.raises(ValueError, match=r"name must be one of .*Received: name='odd'"):
        specs.spec("odd")


def test_the_package_offers_build_without_importing_keras_for_the_table():
    code = (
        "import sys\n"
        "from agegender.models import specs\n"
        "assert 'keras' not in sys.modules\n"
        "from agegender import models\n"
        "from agegender.models.builders import build\n"
        "assert models.build is build and models.Augmentation\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
