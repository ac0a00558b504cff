"""Test helpers shared by the test modules: tiny UTKFace-like folders made with Pillow, and
results folders written as a run writes them (importable as ``support``: see pyproject.toml)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from agegender import evaluation

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Captured at import, before the autouse fixture of conftest.py hides it from every test.
REAL_SOURCE = os.environ.get("UTKFACE_SOURCE")

# Ten strata (5 age bands x 2 genders), ten files each: enough for 70/15/15 in every stratum.
AGES = (5, 16, 30, 45, 70)
GOOD_PER_STRATUM = 10

# Names as UTKFace really has them, accepted with these labels (age, gender, race).
ODD_BUT_ACCEPTED = {
    "39_1_20170116174525125.jpg.chip.jpg": (39, 1, None),  # race field missing
    "24_0_1_20170116220224657 .jpg.chip.jpg": (24, 0, 1),  # stray space
    "55_0_0_20170116232725357jpg.chip.jpg": (55, 0, 0),  # missing dot
    "14_0_0_2017011022340900.jpg.chip.jpg": (14, 0, 0),  # 16-digit timestamp
}
# Names that must be rejected, with the reason the manifest gives.
BAD_NAMES = {
    "abc_0_0_20170116174525125.jpg.chip.jpg": "age is not a number",
    "150_0_0_20170116174525125.jpg.chip.jpg": "age outside 0-116",
    "30_2_0_20170116174525125.jpg.chip.jpg": "gender is not 0 or 1",
    "30_1_9_20170116174525125.jpg.chip.jpg": "race is not 0-4",
    "30.jpg.chip.jpg": "too few name fields",
    "notes.txt": "not an image file name",
}
# Well-named files whose contents are bad.
BAD_CONTENTS = {
    "20_0_0_20170101000000001.jpg.chip.jpg": "empty file",
    "21_0_0_20170101000000002.jpg.chip.jpg": "truncated or corrupt image",
    "22_0_0_20170101000000003.jpg.chip.jpg": "not a readable image",
}


def write_jpeg(path: Path, seed: int, size: int = 48) -> bytes:
    """A small noisy JPEG, distinct per seed; returns its bytes."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="JPEG", quality=90)
    return path.read_bytes()


def make_utkface(folder: Path) -> dict[str, list[str]]:
    """Fill `folder` with a small UTKFace look-alike; returns the file names by kind."""
    kinds: dict[str, list[str]] = {
        "good": [],
        "odd": [],
        "bad_name": [],
        "bad_content": [],
        "copy": [],
        "conflict": [],
    }
    seed = 0
    for age in AGES:
        for gender in (0, 1):
            for i in range(GOOD_PER_STRATUM):
                seed += 1
                name = f"{age + i % 3}_{gender}_{i % 5}_2017011{i}{seed:011d}.jpg.chip.jpg"
                write_jpeg(folder / name, seed)
                kinds["good"].append(name)
    for name in ODD_BUT_ACCEPTED:
        seed += 1
        write_jpeg(folder / name, seed)
        kinds["odd"].append(name)
    for name in BAD_NAMES:
        seed += 1
        write_jpeg(folder / name, seed)
        kinds["bad_name"].append(name)
    empty, truncated, text = BAD_CONTENTS
    (folder / empty).write_bytes(b"")
    (folder / truncated).write_bytes(write_jpeg(folder / truncated, seed + 1)[:300])
    (folder / text).write_text("this is not an image")
    kinds["bad_content"] += [empty, truncated, text]
    # A consistent duplicate (same labels, byte-identical) and a conflicting one (age differs).
    original = kinds["good"][0]
    consistent_copy = original.replace("2017011", "2018011")
    (folder / consistent_copy).write_bytes((folder / original).read_bytes())
    kinds["copy"].append(consistent_copy)
    age, rest = kinds["good"][1].split("_", 1)
    conflicting = f"{int(age) + 7}_{rest}".replace("2017011", "2019011")
    (folder / conflicting).write_bytes((folder / kinds["good"][1]).read_bytes())
    kinds["conflict"] += [kinds["good"][1], conflicting]
    return kinds


def write_run(folder, *, weights_kind="none", age_offset=0.0, seed=0):
    """A results folder like a trained model's, with made-up but consistent numbers."""
    rng = np.random.default_rng(seed)
    ages = rng.integers(1, 90, 60)
    table = evaluation.predictions_table(
        [f"{a}_{i % 2}_{i % 5}_20170101.jpg" for i, a in enumerate(ages)],
        ages,
        ages + age_offset + rng.normal(0, 3, 60),
        np.arange(60) % 2,
        rng.uniform(0, 1, 60),
    )
    folder.mkdir(parents=True)
    table.to_csv(folder / "predictions.csv", index=False)
    summary = evaluation.summarize(table, resamples=50)
    (folder / "metrics.json").write_text(json.dumps({**summary, "best_epoch": 1}))
    pd.DataFrame(
        {
            "epoch": [0, 1],
            "stage": "train",
            "epoch_time_s": [40.0, 40.0],
            "loss": [2.0, 1.0],
            "val_loss": [2.1, 1.5],
            "age_mae": [9.0, 7.0],
            "val_age_mae": [9.5, 8.0],
            "gender_accuracy": [0.6, 0.7],
            "val_gender_accuracy": [0.6, 0.65],
        }
    ).to_csv(folder / "history.csv", index=False)
    (folder / "provenance.json").write_text(
        json.dumps(
            {
                "weights": {"kind": weights_kind, "path": None, "md5": None},
                "wall_time_s": 90,
                "seed": seed,
                "epochs_run": 2,
                "backend": "tensorflow",
                "devices": ["cpu:0"],
                "training_time_s": 80.0,
                "feature_extraction_s": 10.0,
                "parameters": {
                    "image_size": 64,
                    "config": {"epochs": 2, "fine_tune_epochs": 0},
                    "data": {"train": {"images": 400}, "test": {"images": 60, "rows_sha256": "r"}},
                },
            }
        )
    )


# Tiny synthetic training runs (Keras is imported only by the helpers that need it).
SIZE = 16
TINY_CNN = {"width": 8, "depth": 2, "units": 16, "dropout": 0.0}


def synthetic_faces(n: int, size: int = SIZE, seed: int = 0):
    """Images whose brightness is the age (0-80) and whose left half is brighter for females."""
    rng = np.random.default_rng(seed)
    ages = rng.integers(0, 81, n)
    genders = rng.integers(0, 2, n)
    images = np.repeat((ages * 3.0)[:, None, None, None], 3, axis=-1) * np.ones((1, size, size, 1))
    images[:, :, : size // 2] += 40.0 * genders[:, None, None, None]
    images += rng.normal(0, 4, images.shape)
    files = [
        f"{a}_{g}_{i % 5}_20170101{i:09d}.jpg.chip.jpg"
        for i, (a, g) in enumerate(zip(ages, genders, strict=True))
    ]
    return np.clip(images, 0, 255).astype("uint8"), ages, genders, np.array(files)


def loaders(n_train=64, n_val=16, n_test=16, size=SIZE, batch_size=16):
    """Train (shuffled), validation and test `FaceBatches` of `synthetic_faces`."""
    from agegender.data.loader import FaceBatches

    images, ages, genders, files = synthetic_faces(n_train + n_val + n_test, size)
    rows = np.arange(len(images))
    return (
        FaceBatches(
            images, rows[:n_train], ages, genders, files, batch_size=batch_size, shuffle=True
        ),
        FaceBatches(
            images, rows[n_train : n_train + n_val], ages, genders, files, batch_size=batch_size
        ),
        FaceBatches(images, rows[n_train + n_val :], ages, genders, files, batch_size=batch_size),
    )


def config(**changes):
    """A `TrainingConfig` for tiny runs: 3 epochs, quick bootstrap, silent, patient callbacks."""
    from agegender.training.config import TrainingConfig

    values = {
        "epochs": 3,
        "learning_rate": 3e-3,
        "bootstrap_resamples": 20,
        "verbose": 0,
        "early_stopping_patience": 20,
        "reduce_lr_patience": 20,
        **changes,
    }
    return TrainingConfig(**values)


def write_notebook(path, parameters: str, body: str):
    """A chapter: a ``parameters`` cell and one more code cell, for the python3 kernel."""
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(body),
    ]
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(notebook, path)
