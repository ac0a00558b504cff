"""Bad parameter values are refused by the plan, before any chapter runs, with what to do."""

import math
import urllib.error
import urllib.request

import pytest
from support import SIZE, TINY_CNN, config, loaders

from agegender import cli, runner
from agegender.errors import AgegenderError
from agegender.training.config import TrainingConfig


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3", 3),
        ("010", 10),  # YAML 1.1: 8 (octal)
        ("-2", -2),
        ("1e-3", 0.001),  # YAML 1.1: the string "1e-3"
        ("0.5", 0.5),
        ("1:04", "1:04"),  # YAML 1.1: 64 (base 60)
        ("no", "no"),  # YAML 1.1: False
        ("off", "off"),
        ("true", True),
        ("False", False),
        ("null", None),
        ("~", None),
        ("", None),
        ("'true'", "true"),
        ('"010"', "010"),
        ("inf", "inf"),
        (".inf", ".inf"),
        ("x=y", "x=y"),
        ("/no/such/file.h5", "/no/such/file.h5"),
    ],
)
def test_command_line_values_are_read_as_yaml_1_2_reads_them(text, value):
    parsed = runner.parameter_value(text)
    assert parsed == value and type(parsed) is type(value)


def refusal(overrides: list[str], only=("custom_cnn",), profile="smoke") -> str:
    with pytest.raises(AgegenderError) as caught:
        runner.plan(profile, only=list(only), overrides=runner.parse_overrides(overrides))
    return str(caught.value)


@pytest.mark.parametrize(
    ("override", "only", "words"),
    [
        ("epochs=-1", "custom_cnn", "epochs must be a non-negative integer. Received: epochs=-1"),
        ("epochs=0", "custom_cnn", "at least one epoch"),
        ("image_size=0", "custom_cnn", "image_size must be a positive integer"),
        ("image_size=16", "vgg16_features", "image_size must be at least 32 for vgg16"),
        ("depth=9", "custom_cnn", "image_size must be at least 2**depth = 512"),
        ("batch_size=0", "custom_cnn", "batch_size must be a positive integer"),
        ("max_train_images=0", "custom_cnn", "max_train_images must be a positive integer"),
        ("max_eval_images=-5", "vgg16_features", "max_eval_images must be a positive integer"),
        ("learning_rate=1e6", "custom_cnn", "learning_rate must be above 0 and at most 1.0"),
        ("learning_rate=0", "custom_cnn", "learning_rate must be above 0"),
        ("learning_rate=inf", "custom_cnn", "does not match its type float"),
        ("fine_tune_learning_rate=nan", "resnet50_finetune", "does not match its type float"),
        ("dropout=1.5", "custom_cnn", "dropout must be a number in [0, 1)"),
        ("color=blue", "custom_cnn", "color must be one of ('rgb', 'grey')"),
        ("age_head=cubic", "custom_cnn", "age_head must be one of"),
        ("seed=-1", "custom_cnn", "seed must be a non-negative integer"),
        ("image_size=1:04", "custom_cnn", "image_size='1:04' does not match its type int"),
        ("weights=/no/such/file.h5", "vgg16_features", "Weights file not found: /no/such/file.h5"),
        ("weights=no", "resnet50_finetune", "(for no weights, give null)"),
        ("conflict_pairs=-1", "data", "conflict_pairs must be a non-negative integer"),
        ("faces_per_band=0", "data", "faces_per_band must be a positive integer"),
    ],
)
def test_a_bad_value_is_refused_by_the_plan_naming_the_chapter(override, only, words):
    message = refusal([override], only=[only])
    assert words in message and ".ipynb" in message  # which chapter refuses it


def test_a_weights_file_that_is_not_one_is_refused_before_any_work(tmp_path):
    fake = tmp_path / "vgg16.weights.h5"
    fake.write_text("<html>Not found</html>")  # e.g. an error page saved under the file's name
    assert "is not an HDF5 weights file" in refusal([f"weights={fake}"], only=["vgg16_features"])
    fake_model = tmp_path / "model.keras"
    fake_model.write_bytes(b"\x00" * 64)
    message = refusal([f"weights={fake_model}"], only=["resnet50_finetune"])
    assert "is not a .keras model (a zip archive)" in message


def test_the_profile_is_not_a_parameter():
    for value in ("cpu", "../../../x"):
        message = refusal([f"profile={value}"])
        assert "The profile is not a parameter" in message and f"agegender run {value}" in message


def test_the_chapters_defaults_pass_the_checks_under_every_profile():
    for profile in runner.profiles():
        assert runner.plan(profile, overrides={"weights": None})


def test_the_command_refuses_a_bad_value_before_running_any_chapter(tmp_path, capsys):
    chapters = runner.chapters()
    before = {path: path.stat().st_mtime_ns for path in chapters}
    code = cli.main(["run", "smoke", "-p", "epochs=3", "-p", "learning_rate=inf"])
    assert code != 0
    assert "learning_rate='inf' does not match its type float" in capsys.readouterr().err
    assert {path: path.stat().st_mtime_ns for path in chapters} == before
    assert not any(path.with_suffix(".failed.ipynb").exists() for path in chapters)


def test_non_finite_rates_are_refused_by_the_training_config():
    for value in (math.inf, math.nan, -1e-3, 2.0):
        with pytest.raises(ValueError, match=r"learning_rate must be above 0 and at most 1\.0"):
            TrainingConfig(learning_rate=value)
    assert TrainingConfig(learning_rate=1.0).learning_rate == 1.0


def test_imagenet_weights_that_cannot_be_had_are_refused_before_any_chapter_runs(
    tmp_path, monkeypatch
):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    message = refusal([], only=["data", "custom_cnn", "vgg16_features"], profile="cpu")
    assert message.startswith("03_vgg16_features.ipynb: ImageNet weights for vgg16 are not on")
    assert "make report WEIGHTS=null" in message and "vgg16_weights_tf_dim" in message
    for spelling in ("null", "none", "None", "~"):  # all mean no weights
        assert (
            runner.plan(
                "cpu",
                only=["vgg16_features"],
                overrides=runner.parse_overrides([f"weights={spelling}"]),
            )[0].parameters["weights"]
            is None
        )


@pytest.mark.slow
def test_a_diverging_run_stops_with_a_clear_error_and_keeps_nothing_of_it(tmp_path):
    import numpy as np

    from agegender.models.builders import build
    from agegender.training.experiment import run_experiment

    nan_model = build("custom_cnn", image_size=SIZE, **TINY_CNN)
    nan_model.set_weights([np.full_like(w, np.nan) for w in nan_model.get_weights()])
    weights = tmp_path / "diverged.weights.h5"
    nan_model.save_weights(weights)
    train, val, test = loaders()
    with pytest.raises(AgegenderError, match=r"Training diverged in epoch 1: .*Lower the learning"):
        run_experiment(
            "custom_cnn",
            train,
            val,
            test,
            results_dir=tmp_path / "results",
            work_dir=tmp_path / "work",
            config=config(),
            model_options={**TINY_CNN, "weights": str(weights)},
            provenance={"profile": "test"},
        )
    assert not (tmp_path / "results").exists()
    assert not list((tmp_path / "work").rglob("state.json"))  # no epoch to resume from
    assert not list((tmp_path / "work").rglob("*.keras"))


def test_the_data_chapter_shows_zero_conflict_pairs_and_data_without_conflicts(utkface_folder):
    from matplotlib.figure import Figure

    from agegender import plots
    from agegender.data.manifest import apply_duplicate_policy, scan

    folder, _ = utkface_folder
    manifest = apply_duplicate_policy(scan(folder))
    for table in (manifest, manifest.assign(conflict=False)):
        pairs = plots.conflicting_pairs(table, 0 if table is manifest else 4)
        assert pairs.empty
        assert isinstance(plots.image_pairs(folder, pairs), Figure)
