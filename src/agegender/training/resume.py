"""Resuming: the state an interrupted run continues from, and the fingerprint that guards it."""

from __future__ import annotations

import json
import shutil
import time
import zipfile
from pathlib import Path
from typing import ClassVar

import keras
import numpy as np
import pandas as pd
from keras import ops

from agegender.files import write_json_atomic, write_text_atomic
from agegender.training.history import INVOCATION


class TrainingState(keras.callbacks.Callback):
    """Saves after every epoch what an interrupted stage needs to continue, and restores it.

    One folder per stage holds ``history.csv`` (the epochs so far, to watch a run),
    ``state.json`` (the next epoch, the history so far, whether early stopping fired, the other
    callbacks' counters, the layers' random-number states) and the weights with the optimiser's
    state (``epoch-N.weights.h5``). With the random states (augmentation, dropout; Keras keeps
    them out of the weights file) and the loader's per-epoch order, a resumed run continues
    exactly as the uninterrupted one would have.
    The JSON file is replaced last, so it always names a complete weights file. Keras' own
    `BackupAndRestore` restores weights and the epoch, but not the history or the counters of
    early stopping, the learning-rate schedule or the checkpoint; a resumed run would repeat or
    lose history rows and restart its patience.

    Put it after the callbacks whose state it keeps, so it saves their state after their update
    and restores it after their own `on_train_begin` has reset it.
    """

    # Per callback: the attributes that carry over from one epoch to the next.
    KEPT: ClassVar[dict[str, tuple[str, ...]]] = {
        "early_stopping": ("wait", "best", "best_epoch", "stopped_epoch"),
        "reduce_lr": ("wait", "cooldown_counter", "best"),
        "checkpoint": ("best",),
    }

    def __init__(
        self,
        folder: Path,
        fingerprint: str,
        *,
        stage: str,
        state: dict | None,
        callbacks: dict,
        invocation: str | None = None,
    ):
        super().__init__()
        self.folder = Path(folder)
        self.fingerprint = fingerprint
        self.stage = stage
        self.invocation = invocation  # names the invocation that trained each epoch
        self.state = state
        self.kept = callbacks
        self.history = list(state["history"]) if state else []

    @classmethod
    def read(cls, folder: Path, fingerprint: str) -> dict | None:
        path = Path(folder) / "state.json"
        if not path.is_file():
            return None
        state = json.loads(path.read_text())
        return state if state.get("fingerprint") == fingerprint else None

    def on_train_begin(self, logs=None):
        if self.state is None:
            return
        for key, callback in self.kept.items():
            for attribute, value in self.state["callbacks"][key].items():
                setattr(callback, attribute, value)
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(self.folder / self.state["weights"])
        for variable, value in zip(
            random_states(self.model), self.state.get("random_states") or [], strict=False
        ):
            variable.assign(np.asarray(value, dtype=variable.dtype))

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.perf_counter()
        # The rate this epoch trains at: by its end, a schedule callback may have lowered it.
        self.epoch_rate = float(ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_end(self, epoch, logs=None):
        row = {
            "epoch": epoch,
            "stage": self.stage,
            "learning_rate": self.epoch_rate,
            "epoch_time_s": round(time.perf_counter() - self.epoch_started, 3),
        }
        if self.invocation is not None:
            row[INVOCATION] = self.invocation
        row.update(
            {key: float(value) for key, value in (logs or {}).items() if key != "learning_rate"}
        )
        self.history.append(row)
        self.folder.mkdir(parents=True, exist_ok=True)
        weights = f"epoch-{epoch + 1}.weights.h5"
        self.model.save_weights(self.folder / weights)
        previous = self.state["weights"] if self.state else None
        self._write(
            next_epoch=epoch + 1,
            weights=weights,
            done=False,
            stopped=bool(self.model.stop_training),
            random_states=[ops.convert_to_numpy(v).tolist() for v in random_states(self.model)],
        )
        if previous and previous != weights:
            (self.folder / previous).unlink(missing_ok=True)

    def finish(self) -> None:
        """Mark the stage as done and drop its weights (the best model is kept elsewhere)."""
        state = self.state or {}
        self._write(
            next_epoch=state.get("next_epoch", 0),
            weights=None,
            done=True,
            stopped=state.get("stopped", False),
            random_states=state.get("random_states"),
        )
        for path in self.folder.glob("epoch-*.weights.h5"):
            path.unlink()

    def _write(self, **fields) -> None:
        self.state = {
            "fingerprint": self.fingerprint,
            **fields,
            "history": self.history,
            "callbacks": {
                key: {
                    attribute: _number(getattr(callback, attribute, None))
                    for attribute in self.KEPT[key]
                }
                for key, callback in self.kept.items()
            },
        }
        # The CSV is for people watching a run; state.json is what resuming reads.
        write_text_atomic(
            self.folder / "history.csv", pd.DataFrame(self.history).to_csv(index=False)
        )
        write_json_atomic(self.folder / "state.json", self.state)


def start(work_dir: Path, fingerprint: str, *, fresh: bool) -> None:
    """Drop the saved state and models of `work_dir` when `fresh`, made for another fingerprint
    or when the best model is damaged, then record `fingerprint` as the run's."""
    path = work_dir / "fingerprint.json"
    changed = path.is_file() and json.loads(path.read_text()).get("fingerprint") != fingerprint
    damaged = damaged_best(work_dir)
    if damaged:
        print(
            f"note: {damaged} is damaged (not a complete Keras file: a write was cut short). It "
            "is removed with the saved training state, which keeps only the last epoch and so "
            "cannot rebuild the best model: the run starts over."
        )
    if fresh or changed or damaged:
        shutil.rmtree(work_dir / "state", ignore_errors=True)
        for name in ("best.keras", "model.keras"):
            (work_dir / name).unlink(missing_ok=True)
    for leftover in work_dir.glob(".*.tmp.keras"):  # a write killed before its rename
        leftover.unlink()
    write_json_atomic(path, {"fingerprint": fingerprint})


def damaged_best(work_dir: Path) -> Path | None:
    """``best.keras`` when it is there but not a complete Keras file (a zip archive): a write cut
    short, as Keras' own checkpoint, which writes in place, leaves one."""
    path = work_dir / "best.keras"
    return path if path.is_file() and not zipfile.is_zipfile(path) else None


def random_states(model) -> list:
    """The state variables of the model's random-number generators (augmentation, dropout), in
    a fixed order: what `model.variables` holds beyond `model.weights`."""
    weights = {id(variable) for variable in model.weights}
    return [variable for variable in model.variables if id(variable) not in weights]


def _number(value):
    if value is None or isinstance(value, bool | int | str):
        return value
    return float(ops.convert_to_numpy(value))
