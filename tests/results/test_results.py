import subprocess
import sys

import pandas as pd
import pytest
from support import write_run

from agegender.config import Paths
from agegender.errors import AgegenderError
from agegender.evaluation import METRICS
from agegender.results import store, tables


@pytest.fixture
def runs(tmp_path):
    write_run(tmp_path / "results" / "smoke" / "custom_cnn")
    write_run(tmp_path / "results" / "smoke" / "resnet50_finetune", age_offset=10.0, seed=1)
    return store.load_models("smoke", Paths(tmp_path, tmp_path / "data"))


def test_profiles_load_in_model_order_and_flag_random_initialisation(runs):
    assert list(runs) == ["custom_cnn", "resnet50_finetune"]
    assert tables.weights_tag(runs["custom_cnn"]) == "from scratch"
    caption = tables.weights_caption(runs)
    assert caption == (
        "Starting weights: custom_cnn: trained from scratch; resnet50_finetune: "
        "random initialisation (not transfer learning)."
    )


def test_headline_table_shows_values_with_their_intervals(runs):
    table = tables.headline_table(runs)
    assert list(table.index) == ["custom_cnn", "resnet50_finetune"]
    mae = runs["custom_cnn"].metrics["confidence_intervals"]["age_mae"]
    half = (mae["high"] - mae["low"]) / 2
    assert (
        table.loc["custom_cnn", "age MAE ± 95% CI"] == f"{mae['value']:.2f}\u00a0±\u00a0{half:.2f}"
    )
    assert (
        table.loc["custom_cnn", "CS@5"] == f"{runs['custom_cnn'].metrics['overall']['age_cs5']:.3f}"
    )
    assert table.loc["custom_cnn", "weights"] == "from scratch"
    assert table.loc["resnet50_finetune", "weights"] == "random init (not transfer)"


def test_metrics_table_lists_every_metric_of_one_run(runs):
    table = tables.metrics_table(runs["custom_cnn"])
    assert list(table.index) == [tables.METRIC_LABELS[m] for m in METRICS]
    intervals = runs["custom_cnn"].metrics["confidence_intervals"]
    assert table.loc["age RMSE (years)", "95% CI"] == (
        f"[{intervals['age_rmse']['low']:.2f}, {intervals['age_rmse']['high']:.2f}]"
    )


def test_group_and_cost_tables(runs):
    bands = tables.group_table(runs, "age_band", "age_mae").data
    assert list(bands.index) == ["custom_cnn", "resnet50_finetune"]
    groups = pd.DataFrame(runs["custom_cnn"].metrics["by_group"]).query("grouping == 'age_band'")
    labels = [f"{g} (n={n})" for g, n in zip(groups["group"], groups["n"], strict=True)]
    assert list(bands.columns) == labels
    assert (bands.loc["resnet50_finetune"] > bands.loc["custom_cnn"]).all()  # ten years off
    cost = tables.cost_table(runs)
    assert cost.loc["custom_cnn", "training time (min)"] == 1.5  # 80 s of epochs + 10 s features
    assert cost.loc["custom_cnn", "training images"] == 400
    assert cost.loc["custom_cnn", "epochs"] == "2 (best 2)"


def test_protocol_names_each_run_and_the_shared_test_images(runs):
    assert tables.protocol(runs) == (
        "Protocol: models trained on 400 images at 64 px (epochs: custom_cnn 2, "
        "resnet50_finetune 2); all tested on the same 60 test images."
    )
    runs["resnet50_finetune"].provenance["parameters"]["image_size"] = 128
    assert tables.protocol(runs) == (
        "Protocol: custom_cnn trained on 400 images at 64 px for 2 epochs; resnet50_finetune "
        "trained on 400 images at 128 px for 2 epochs; all tested on the same 60 test images."
    )


def test_runs_tested_on_different_images_are_not_compared(runs):
    tables.check_same_test_images(runs)
    runs["resnet50_finetune"].provenance["parameters"]["data"]["test"]["rows_sha256"] = "other"
    with pytest.raises(AgegenderError, match="different images"):
        tables.check_same_test_images(runs)


def test_missing_results_are_a_clear_error(tmp_path):
    with pytest.raises(AgegenderError, match="agegender run cpu"):
        store.load_models("cpu", Paths(tmp_path, tmp_path / "data"))
    (tmp_path / "results" / "cpu" / "custom_cnn").mkdir(parents=True)
    with pytest.raises(AgegenderError, match="lacks"):
        store.load_models("cpu", Paths(tmp_path, tmp_path / "data"))


def test_reading_results_and_making_the_tables_imports_no_keras(runs, tmp_path):
    code = (
        "import sys\n"
        "from agegender import plots\n"
        "from pathlib import Path\n"
        "from agegender.config import Paths\n"
        "from agegender.results import store, summary, tables\n"
        f"root = Path({str(tmp_path)!r})\n"
        "runs = store.load_models('smoke', Paths(root, root / 'data'))\n"
        "tables.headline_table(runs), tables.cost_table(runs)\n"
        "summary.comparison_chapter(runs, {})\n"
        "plots.comparison_curves({n: r.history for n, r in runs.items()})\n"
        "assert len(runs) == 2\n"
        "loaded = [m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _git_project(root, tracked: bool):
    """A project checkout whose results/cpu/custom_cnn holds a file, committed or not."""

    def git(*args):
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)

    for marker in ("_toc.yml", "pyproject.toml"):
        (root / marker).write_text("")
    folder = root / "results" / "cpu" / "custom_cnn"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text("{}\n")
    git("init", "-q")
    git("add", "_toc.yml", "pyproject.toml", *(["results"] if tracked else []))
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    return folder


def test_a_published_run_is_not_replaced_unless_asked(tmp_path, monkeypatch):
    folder = _git_project(tmp_path, tracked=True)
    monkeypatch.delenv(store.OVERWRITE, raising=False)
    assert store.published(folder)
    with pytest.raises(AgegenderError) as refused:
        store.check_replaceable(folder, profile="cpu", run="custom_cnn")
    message = str(refused.value)
    assert "published" in message and "`agegender run cpu --only custom_cnn`" in message
    assert "another profile name" in message and f"{store.OVERWRITE}=1" in message
    study = folder.parent / "studies" / "seeds" / "seed_1"
    study.mkdir(parents=True)
    (study / "metrics.json").write_text("{}\n")
    subprocess.run(["git", "add", "results"], cwd=tmp_path, check=True)
    with pytest.raises(AgegenderError, match=r"`agegender study cpu --only seeds`"):
        store.check_replaceable(study, profile="cpu", run="studies/seeds/seed_1")

    monkeypatch.setenv(store.OVERWRITE, "1")  # what `agegender run` and `agegender study` set
    store.check_replaceable(folder, profile="cpu", run="custom_cnn")
    monkeypatch.delenv(store.OVERWRITE)
    with store.replacing_published():
        store.check_replaceable(folder, profile="cpu", run="custom_cnn")
    assert store.OVERWRITE not in __import__("os").environ


def test_an_untracked_or_new_results_folder_is_not_published(tmp_path, monkeypatch):
    monkeypatch.delenv(store.OVERWRITE, raising=False)
    folder = _git_project(tmp_path, tracked=False)
    assert not store.published(folder)
    store.check_replaceable(folder, profile="cpu", run="custom_cnn")
    assert not store.published(tmp_path / "results" / "mine" / "custom_cnn")  # not there yet
    outside = tmp_path.parent / f"{tmp_path.name}-no-git"
    outside.mkdir()
    assert not store.published(outside)  # no repository: not published


def test_a_chapter_by_hand_is_refused_before_any_work(tmp_path, monkeypatch):
    from agegender.training.utkface import train_on_utkface

    _git_project(tmp_path, tracked=True)
    monkeypatch.setenv("AGEGENDER_ROOT", str(tmp_path))
    monkeypatch.delenv(store.OVERWRITE, raising=False)
    with pytest.raises(AgegenderError, match="published results of profile 'cpu'"):
        train_on_utkface(None, "custom_cnn", profile="cpu", image_size=16, epochs=1)
    assert not (tmp_path / "data").exists()  # no data loaded, no work folder touched
