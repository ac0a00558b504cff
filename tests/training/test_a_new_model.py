"""Adding a model is one spec entry plus its builder: a fourth model goes through training,
results, tables, summaries and figures without any other code knowing its name."""

import keras
import pytest

from agegender import plots
from agegender.data.dataset import prepare
from agegender.models.heads import assemble, heads
from agegender.models.specs import MODELS, ModelSpec
from agegender.results import store, summary, tables
from agegender.training.utkface import default_settings, train_on_utkface


def tiny_cnn(*, image_size, channels=3, weights=None, filters=4, augmentation=None, seed=None):
    """The fourth model: one convolution and the project's heads."""
    images = keras.Input((image_size, image_size, channels), name="image")
    x = keras.layers.Rescaling(1 / 255)(images)
    x = keras.layers.Conv2D(filters, 3, activation="relu", name="conv")(x)
    extractor = keras.Model(images, x, name="extractor")
    return assemble(extractor, heads(extractor.output.shape[1:], units=8), name="tiny_cnn")


@pytest.fixture
def tiny_model(monkeypatch):
    model = ModelSpec("tiny_cnn", tiny_cnn, "a one-layer CNN trained from scratch")
    monkeypatch.setitem(MODELS, model.name, model)
    return model


@pytest.mark.slow
def test_a_registered_model_runs_through_training_results_and_tables(
    tiny_model, utkface_folder, project
):
    folder, _ = utkface_folder
    data = prepare(project, str(folder))
    assert default_settings("tiny_cnn")["filters"] == 4  # its builder's options are settings
    experiment = train_on_utkface(
        data,
        "tiny_cnn",
        profile="smoke",
        image_size=16,
        batch_size=16,
        epochs=2,
        filters=2,
        bootstrap_resamples=20,
        verbose=0,
    )
    assert experiment.results_dir == project.run_results("smoke", "tiny_cnn")
    assert experiment.provenance["parameters"]["model_options"]["filters"] == 2

    runs = store.load_models("smoke", project)
    assert list(runs) == ["tiny_cnn"]
    run = runs["tiny_cnn"]
    assert run.history["epoch"].tolist() == [0, 1]
    assert tables.headline_table(runs).loc["tiny_cnn", "weights"] == "from scratch"
    assert tables.cost_table(runs).loc["tiny_cnn", "training images"] == len(data.rows("train"))
    assert "tiny_cnn" in tables.protocol(runs)
    values = summary.model_chapter(run)
    assert values["weights_notice"] == "" and values["n_test"] == f"{len(data.rows('test')):,}"
    answer = summary.comparison_chapter(runs, {})["answer"]
    assert answer.startswith("tiny_cnn (from scratch) is best on both tasks")
    assert plots.learning_curves(run.history, run.metrics.get("best_epoch")) is not None


def test_a_models_unknown_setting_is_refused_before_any_work(tiny_model, project):
    with pytest.raises(ValueError, match=r"tiny_cnn has no setting width; .*filters"):
        train_on_utkface(None, "tiny_cnn", profile="smoke", image_size=16, width=3)
