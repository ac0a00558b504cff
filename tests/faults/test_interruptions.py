"""Interruptions and faults leave nothing that looks finished and nothing that blocks the next run:
the best model is written whole, a killed kernel or a terminated run says what happened, a
results folder is one run's, and the history says the rate each epoch trained at."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support import TINY_CNN, config, loaders, write_notebook

from agegender import cli, evaluation
from agegender.errors import AgegenderError
from agegender.results import store

slow = pytest.mark.slow


class Killed(Exception):
    """Stands for a process killed at that point."""


def train(tmp_path, *, epochs=2, learning_rate=3e-3, callbacks=()):
    """A tiny custom CNN's run, in `tmp_path`'s results/ and work/."""
    from agegender.training.experiment import run_experiment

    return run_experiment(
        "custom_cnn",
        *loaders(),
        results_dir=tmp_path / "results",
        work_dir=tmp_path / "work",
        config=config(epochs=epochs, learning_rate=learning_rate),
        model_options=TINY_CNN,
        callbacks=callbacks,
    )


# --- the best model ------------------------------------------------------------------------


@slow
def test_a_kill_while_the_best_model_is_written_leaves_the_previous_one(tmp_path, monkeypatch):
    import keras

    from agegender.models.builders import load_checkpoint

    save, saved = keras.Model.save, []

    def killed_in_the_second_save(model, path, *args, **kwargs):
        saved.append(path)
        if len(saved) == 2:
            Path(path).write_bytes(b"PK\x03\x04")  # the first bytes of the archive, then the kill
            raise Killed
        return save(model, path, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save", killed_in_the_second_save)
    with pytest.raises(Killed):
        train(tmp_path, epochs=4, learning_rate=1e-2)
    best = tmp_path / "work" / "best.keras"
    assert zipfile.is_zipfile(best)  # Keras' own checkpoint: 4 bytes
    load_checkpoint(best)
    assert [p.name for p in best.parent.iterdir() if p.name.startswith(".")] == []

    monkeypatch.setattr(keras.Model, "save", save)
    again = train(tmp_path, epochs=4, learning_rate=1e-2)
    assert again.provenance["resumed"] is True
    assert again.history["epoch"].tolist() == [0, 1, 2, 3]


@slow
def test_a_damaged_best_model_is_dropped_and_the_run_starts_over(tmp_path, capsys):
    import keras

    epochs = []
    seen = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: epochs.append(epoch))
    train(tmp_path)
    best = tmp_path / "work" / "best.keras"
    best.write_bytes(b"")  # as a kill during Keras' own write left it
    capsys.readouterr()
    again = train(tmp_path, callbacks=[seen])
    assert f"note: {best} is damaged" in capsys.readouterr().out
    assert epochs == [0, 1]  # the state keeps the last epoch, not the best model: start over
    assert zipfile.is_zipfile(best)
    assert again.history["epoch"].tolist() == [0, 1]
    assert store.load(tmp_path / "results").history["epoch"].tolist() == [0, 1]


# --- the runner ----------------------------------------------------------------------------


def one_chapter_book(root: Path, body: str) -> Path:
    """A project whose book is one chapter running `body`; returns the book folder."""
    (root / "book").mkdir(parents=True)
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/01_only\n")
    (root / "pyproject.toml").write_text("")
    write_notebook(root / "book" / "01_only.ipynb", "seed: int = 1  # a seed", body)
    return root / "book"


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie waiting to be reaped does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"
    except FileNotFoundError:
        return False


@slow
def test_a_kernel_killed_like_an_out_of_memory_kill_is_reported_and_kept(
    tmp_path, monkeypatch, capsys
):
    book = one_chapter_book(tmp_path, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    before = (book / "01_only.ipynb").read_text()
    monkeypatch.setenv("AGEGENDER_ROOT", str(tmp_path))
    assert cli.main(["run", "smoke"]) == 2
    error = capsys.readouterr().err
    assert "error: 01_only.ipynb stopped: its kernel died, killed from outside" in error
    assert "Run the command again to resume" in error
    assert f"saved as {book / '01_only.failed.ipynb'}" in error
    assert sorted(p.name for p in book.iterdir()) == ["01_only.failed.ipynb", "01_only.ipynb"]
    assert (book / "01_only.ipynb").read_text() == before


@slow
def test_sigterm_stops_a_run_as_ctrl_c_does(tmp_path):
    book = one_chapter_book(
        tmp_path,
        'import os, time\nopen("kernel.pid", "w").write(str(os.getpid()))\ntime.sleep(120)',
    )
    before = (book / "01_only.ipynb").read_text()
    run = subprocess.Popen(
        [sys.executable, "-m", "agegender.cli", "run", "smoke"],
        env={**os.environ, "AGEGENDER_ROOT": str(tmp_path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (book / "kernel.pid").is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    run.send_signal(signal.SIGTERM)
    _, error = run.communicate(timeout=60)
    assert run.returncode == 128 + signal.SIGTERM
    assert (
        "interrupted by SIGTERM: nothing half-written was kept; run the command again to resume"
        in error
    )
    assert sorted(p.name for p in book.iterdir()) == ["01_only.ipynb", "kernel.pid"]
    assert (book / "01_only.ipynb").read_text() == before
    kernel = int((book / "kernel.pid").read_text())
    deadline = time.monotonic() + 10
    while alive(kernel) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(kernel)


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
    write_bytes = Path.write_bytes

    def disk_full_at_the_metrics(path, *args, **kwargs):
        if "metrics" in path.name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return write_bytes(path, *args, **kwargs)

    monkeypatch.setattr(Path, "write_bytes", disk_full_at_the_metrics)
    with pytest.raises(OSError, match="No space left"):
        store.write_run(folder, **run_files(seed=2))
    monkeypatch.setattr(Path, "write_bytes", write_bytes)

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


# --- the history ---------------------------------------------------------------------------


@slow
def test_the_history_gives_the_rate_each_epoch_trained_at(tmp_path, monkeypatch):
    import keras

    def halve_the_rate(callback, epoch, logs=None):  # a plateau every epoch
        optimizer = callback.model.optimizer
        optimizer.learning_rate = float(keras.ops.convert_to_numpy(optimizer.learning_rate)) / 2

    monkeypatch.setattr(keras.callbacks.ReduceLROnPlateau, "on_epoch_end", halve_the_rate)
    run = train(tmp_path, epochs=3, learning_rate=4e-3)
    assert run.history["learning_rate"].tolist() == pytest.approx([4e-3, 2e-3, 1e-3])
