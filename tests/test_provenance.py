import dataclasses

import numpy as np

from agegender import provenance


def test_git_commit_and_versions_are_recorded():
    commit = provenance.git_commit()
    assert set(commit) == {"git_commit", "git_dirty"}
    assert commit["git_commit"] is None or len(commit["git_commit"]) == 40
    versions = provenance.versions()
    assert versions["numpy"] == np.__version__ and "tensorflow" in versions
    assert versions["agegender"] and versions["python"]


def test_card_shows_every_field_and_flags_uncommitted_changes():
    record = provenance.collect(
        profile="smoke",
        parameters={"seed": 3, "epochs": 1},
        started=0,
        dataset_sha256="a" * 64,
        split_sha256="b" * 64,
        weights="none (random initialisation)",
    )
    record.update(git_commit="c" * 40, git_dirty=True)
    card = provenance.card(record)
    for text in (
        "`smoke`",
        "`seed=3`",
        "`aaaaaaaaaaaa`",
        "`bbbbbbbbbbbb`",
        "random initialisation",
        "`cccccccccccc` (with uncommitted changes)",
        "cpu:0",
    ):
        assert text in card
    record["git_dirty"] = False
    assert "uncommitted" not in provenance.card(record)
    assert "<details>" not in card  # a chapter's few parameters are all shown


def trained_record(model="custom_cnn", **changes):
    """A trained model's provenance as `run_experiment` records it."""
    from agegender.training.config import TrainingConfig

    config = {**dataclasses.asdict(TrainingConfig()), "epochs": 30, "gender_loss_weight": 10.0}
    record = provenance.collect(
        profile="cpu",
        parameters={
            "model": model,
            "image_size": 64,
            "channels": 3,
            "config": {**config, **changes},
            "model_options": {"width": 32, "dropout": 0.3, "seed": 0, "augmentation": None},
            "mixed_precision": False,
            "jit_compile": False,
            "data": {
                split: {"images": n, "batch_size": 64, "rows_sha256": "r" * 64}
                for split, n in (("train", 16146), ("val", 3459), ("test", 3454))
            },
        },
        started=0,
        weights={"kind": "none", "path": None, "md5": None},
    )
    return record | {"training_time_s": 366.0, "feature_extraction_s": None, "wall_time_s": 20.4}


def test_a_trained_models_card_shows_what_matters_and_folds_the_rest():
    card = provenance.card(trained_record())
    table, folded = card.split("<details>")
    for text in (
        "`custom_cnn`: `width=32`, `dropout=0.3`, no augmentation",
        "16,146 training, 3,459 validation, 3,454 test images, 64 px RGB, batches of 64",
        "`epochs=30`, `learning_rate=0.001`, `gender_loss_weight=10.0`",
        "random initialisation",
        "float32, XLA off",
    ):
        assert text in table
    for hidden in ("fine_tune", "bootstrap_resamples", "early_stopping_patience", "verbose"):
        assert hidden not in table  # defaults, or settings the custom CNN does not use
    assert folded.startswith("\n<summary>All parameters (")
    assert "`config.fine_tune_blocks=3`" in folded and folded.endswith("</details>")
    assert "\n\n<details>\n" in card  # an HTML block of its own, after the table

    tuned = provenance.card(trained_record("resnet50_finetune", fine_tune_epochs=2))
    assert "`fine_tune_epochs=2`, `fine_tune_blocks=3`" in tuned.split("<details>")[0]


def test_the_card_gives_the_training_time_of_every_invocation_of_a_resumed_run():
    record = trained_record()
    assert "training 6 min 6 s; this invocation 20 s wall time" in provenance.card(record)
    record.update(resumed=True, invocations=2)
    assert "training 6 min 6 s over 2 invocations (resumed); this invocation 20 s wall time" in (
        provenance.card(record)
    )
    assert provenance.duration(7530) == "2 h 5 min"


def test_a_run_rewriting_its_chapters_and_results_is_not_a_code_change(tmp_path, monkeypatch):
    import subprocess

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    for path in (
        "book/02_custom_cnn.ipynb",
        "results/cpu/custom_cnn/metrics.json",
        "src/agegender/models.py",
        "_toc.yml",
        "pyproject.toml",
    ):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("first\n")
    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    monkeypatch.setenv("AGEGENDER_ROOT", str(tmp_path))
    (tmp_path / "book/02_custom_cnn.ipynb").write_text("executed\n")
    (tmp_path / "results/cpu/custom_cnn/metrics.json").write_text("new numbers\n")
    assert provenance.git_commit()["git_dirty"] is False
    (tmp_path / "src/agegender/models.py").write_text("changed\n")
    assert provenance.git_commit()["git_dirty"] is True


def record(kind, **config):
    return {
        "weights": {"kind": kind, "path": None, "md5": None},
        "parameters": {"config": {"fine_tune_blocks": 3, "fine_tune_epochs": 2, **config}},
    }


def test_the_notice_says_what_of_a_transfer_model_learned():
    features = provenance.weights_notice("vgg16_features", record("none"))
    assert features.startswith(":::{warning}\n**This run is not transfer learning.**")
    assert "only the two heads learned" in features
    finetuned = provenance.weights_notice("resnet50_finetune", record("none"))
    assert "except the top 3 blocks, which trained for 2 epochs after the heads" in finetuned
    frozen = provenance.weights_notice("resnet50_finetune", record("none", fine_tune_epochs=0))
    assert "Its base stayed frozen at those starting values; only the heads learned." in frozen
    assert provenance.weights_notice("resnet50_finetune", record("imagenet")) == ""
    assert provenance.weights_notice("custom_cnn", record("none")) == ""
