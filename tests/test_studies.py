"""Studies declared by a profile: checked before any work, run as ordinary resumable runs into
``results/<profile>/studies/``, and a selection study never reads the test split."""

import json

import pytest

from agegender import runner, studies
from agegender.data.dataset import prepare
from agegender.errors import AgegenderError
from agegender.results import store


def profile(**study):
    entry = {"model": "custom_cnn", "variants": {"reference": {}}, **study}
    return {
        "parameters": {
            "profile": "smoke",
            "seed": 3,
            "image_size": 16,
            "weights": None,
            "faces_per_band": 4,
        },
        "studies": {"s": entry},
    }


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"model": "alexnet"}, "needs a model among"),
        ({"evaluate_on": "train"}, "evaluate_on must be one of"),
        ({"variants": {}}, "has no variants"),
        ({"colour": "red"}, "unknown key"),
        (
            {"variants": {"a": {"epoch": 3}}},
            r"variant 'a': custom_cnn has no setting\(s\) \['epoch'\]",
        ),
        ({"settings": {"lr": 1}}, r"no setting\(s\) \['lr'\]"),
    ],
)
def test_a_study_is_checked_when_read(entry, message):
    with pytest.raises(AgegenderError, match=message):
        studies.studies(profile(**entry))


def test_a_variant_takes_the_profile_then_the_study_then_its_own_settings():
    found = studies.studies(
        profile(settings={"epochs": 2, "seed": 1}, variants={"reference": {}, "b": {"seed": 2}})
    )["s"]
    shared = profile()["parameters"]
    assert found.variant_settings("reference", shared) == {"seed": 1, "image_size": 16, "epochs": 2}
    assert found.variant_settings("b", shared)["seed"] == 2  # weights: not the custom CNN's
    assert found.run_name("b") == "studies/s/b"
    assert found.evaluate_on == "val"  # choosing settings reads validation only, by default


def test_the_cpu_profile_declares_valid_studies():
    found = studies.studies(runner.load_profile("cpu"))
    assert "recipe" in found and found["recipe"].evaluate_on == "val"
    assert "reference" in found["recipe"].variants


def test_unknown_studies_are_refused():
    with pytest.raises(AgegenderError, match=r"Unknown study\(s\) \['x'\]"):
        studies.select(studies.studies(profile()), ["x"])


@pytest.mark.slow
def test_a_selection_study_writes_validation_results_only(utkface_folder, project):
    folder, _ = utkface_folder
    data = prepare(project, str(folder))
    settings = {
        "epochs": 1,
        "batch_size": 16,
        "bootstrap_resamples": 10,
        "verbose": 0,
        "width": 4,
        "depth": 2,
        "units": 8,
    }
    loaded = profile(settings=settings, variants={"reference": {}, "wide": {"width": 8}})
    study = studies.studies(loaded)["s"]
    lines = []
    studies.run(data, loaded, study, progress=lines.append)
    runs = store.load_study("smoke", "s", list(study.variants), project)
    assert list(runs) == ["reference", "wide"]
    val_files = set(data.split["file"].iloc[data.rows("val")])
    for run in runs.values():
        assert run.metrics["split"] == "val"
        assert set(run.predictions["file"]) <= val_files
        assert "test" not in run.provenance["parameters"]["data"]
        assert run.provenance["seed"] == 3 and run.provenance["deterministic_kernels"]
    assert runs["wide"].provenance["parameters"]["model_options"]["width"] == 8
    assert any("val age MAE" in line for line in lines)
    # the study's folders are not mistaken for peers or baselines
    assert store.load_baselines("smoke", project) == {}
    assert json.loads((project.run_results("smoke", "studies/s/wide") / "metrics.json").read_text())


def test_the_cpu_chapter_uses_the_recipe_its_committed_study_chose():
    """The custom CNN chapter's settings are the committed recipe study's choice, by its rule."""
    from agegender.results import studies as study_results
    from agegender.training.utkface import default_settings

    loaded = runner.load_profile("cpu")
    recipe = studies.studies(loaded)["recipe"]
    runs = store.load_study("cpu", "recipe", recipe.variants)
    assert set(runs) == set(recipe.variants), "commit every variant's results"
    chosen = study_results.chosen_recipe(recipe.variants, runs)
    chapter = {**default_settings("custom_cnn"), **loaded["chapters"]["02_custom_cnn"]}
    assert {key: chapter[key] for key in chosen} == chosen
    # and every variant changed only what it says, on the reference's data
    for name, run in runs.items():
        recorded = run.provenance["parameters"]
        assert recorded["data"]["train"]["images"] == recipe.settings["max_train_images"]
        assert "test" not in recorded["data"], f"{name} read the test split"
