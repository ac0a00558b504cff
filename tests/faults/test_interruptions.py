"""Interruptions and faults leave nothing that looks finished and nothing that blocks the next run:
the best model is written whole, a killed kernel or a terminated run says what happened, a
results folder is one run's, and the history says the rate each epoch trained at."""

import errno
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agegender import evaluation
from agegender.errors import AgegenderError
from agegender.results import store

# --- the results folder --------------------------------------------------------------------


def run_files(seed: int) -> dict:
    """What `store.write_run` writes for a trained model, made up, distinct per seed."""
    rng = np.random.default_rng(seed)
    ages = rng.integers(1, 90, 40)
    predictions = evaluation.predictions_table(
        [f"{a}_{i % 2}_0_2017010{seed}{i:04d}.jpg" for i, a in enumerate(ages)],
        ages,
        ages + rng.normal(0, 3, 40),
        np.arange(40) % 2,
        rng.uniform(0, 1, 40),
    )
    return {
        "history": pd.DataFrame({"epoch": [0, 1], "stage": "train", "val_loss": [2.0, 1.0 + seed]}),
        "predictions": predictions,
        "metrics": evaluation.summarize(predictions, resamples=10),
        "provenance": {"seed": seed},
    }


def test_a_disk_that_fills_half_way_leaves_the_previous_run_whole(tmp_path, monkeypatch):
    folder = tmp_path / "results" / "custom_cnn"
    store.write_run(folder, **run_files(seed=1))
    write_text = Path.write_text

    def disk_full_at_the_metrics(path, *args, **kwargs):
        if "metrics" in path.name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return write_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", disk_full_at_the_metrics)
    with pytest.raises(OSError, match="No space left"):
        store.write_run(folder, **run_files(seed=2))
    monkeypatch.setattr(Path, "write_text", write_text)

    run = store.load(folder)
    first = run_files(seed=1)
    assert run.provenance["seed"] == 1
    assert run.history["val_loss"].tolist() == [2.0, 2.0]
    assert run.predictions["file"].tolist() == first["predictions"]["file"].tolist()
    assert sorted(p.name for p in folder.parent.iterdir()) == ["custom_cnn"]  # nothing left


def test_a_results_folder_whose_files_come_from_two_runs_is_refused(tmp_path):
    one, other = tmp_path / "one", tmp_path / "other"
    store.write_run(one, **run_files(seed=1))
    store.write_run(other, **run_files(seed=2))
    (one / "predictions.csv").write_bytes((other / "predictions.csv").read_bytes())
    with pytest.raises(AgegenderError, match=r"\['predictions.csv'\] do not belong with its"):
        store.load(one)
    assert json.loads((other / "provenance.json").read_text())["seed"] == 2
    store.load(other)
