"""Compiling, fitting one stage (resumably) and predicting, for any two-headed model."""

from __future__ import annotations

import math
from pathlib import Path

import keras
import pandas as pd

from agegender import evaluation
from agegender.checks import check_choice
from agegender.errors import AgegenderError
from agegender.files import replacing, temporary_name
from agegender.training.config import AGE_LOSSES, TrainingConfig
from agegender.training.distribution import portable
from agegender.training.resume import TrainingState


def compile_model(
    model: keras.Model,
    *,
    learning_rate: float,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    decay_steps: int | None = None,
    min_learning_rate: float = 0.0,
    age_loss: str = "mae",
    age_loss_weight: float = 1.0,
    gender_loss_weight: float = 1.0,
    jit_compile: bool | str = "auto",
) -> keras.Model:
    """Compile a two-headed model: per-head losses and weights; age MAE, gender accuracy and AUC.

    Args:
        model: a model with the outputs ``age`` and ``gender`` (or heads alone).
        learning_rate: the optimiser's (first) learning rate.
        optimizer: a Keras optimizer name.
        weight_decay: the optimiser's decoupled weight decay (0: none).
        decay_steps: decay the rate along a cosine to `min_learning_rate` over this many steps
            (None: a constant rate, which callbacks may lower).
        min_learning_rate: the end of the cosine decay.
        age_loss: ``"mae"``, ``"mse"`` or ``"huber"``.
        age_loss_weight, gender_loss_weight: weights of the two losses.
        jit_compile: compile the steps with XLA (True), not (False), or as the backend chooses
            (``"auto"``: always on JAX, on TensorFlow only on a GPU).

    Returns:
        The same model, compiled.
    """
    check_choice(age_loss=age_loss, choices=tuple(AGE_LOSSES))
    rate = learning_rate
    if decay_steps is not None:
        rate = keras.optimizers.schedules.CosineDecay(
            learning_rate,
            decay_steps=decay_steps,
            alpha=min(1.0, min_learning_rate / learning_rate),
        )
    settings = {"learning_rate": rate} | ({"weight_decay": weight_decay} if weight_decay else {})
    model.compile(
        optimizer=keras.optimizers.get({"class_name": optimizer, "config": settings}),
        loss={"age": AGE_LOSSES[age_loss], "gender": "binary_crossentropy"},
        loss_weights={"age": age_loss_weight, "gender": gender_loss_weight},
        # Weighted (the same without sample weights): a batch split over several devices pads
        # with copies of weight 0 (`agegender.data.loader.FaceBatches`), which must not count.
        weighted_metrics={
            "age": [keras.metrics.MeanAbsoluteError(name="mae")],
            "gender": [
                keras.metrics.BinaryAccuracy(name="accuracy"),
                keras.metrics.AUC(name="auc"),
            ],
        },
        jit_compile=jit_compile,
    )
    return model


def predict(model: keras.Model, loader, *, verbose=0) -> pd.DataFrame:
    """The predictions table (`evaluation.predictions_table`) of a model on an unshuffled loader."""
    if getattr(loader, "shuffle", False):
        raise ValueError("Predictions need the loader's row order. Received a shuffled loader.")
    outputs = model.predict(loader, verbose=verbose)
    count = len(loader.rows)  # a loader split over several devices pads its last batch
    return evaluation.predictions_table(
        loader.files, loader.ages, outputs["age"][:count], loader.genders, outputs["gender"][:count]
    )


def fit_stage(
    model,
    data,
    *,
    stage,
    first_epoch,
    epochs,
    config: TrainingConfig,
    state_dir,
    best_path,
    best_so_far,
    fingerprint,
    callbacks,
    invocation: str | None = None,
) -> tuple[list[dict], bool]:
    """Fit one stage with its callbacks; continue from `state_dir` when a state is saved there.

    Each epoch's row names the `invocation` that trained it (`TrainingState`)."""
    state = TrainingState.read(state_dir, fingerprint)
    if state is not None and state["done"]:
        return state["history"], True
    early_stopping = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=config.early_stopping_patience
    )
    kept = {"early_stopping": early_stopping}
    if config.schedule == "plateau":
        kept["reduce_lr"] = keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss",
            factor=config.reduce_lr_factor,
            patience=config.reduce_lr_patience,
            min_lr=config.min_learning_rate,
        )
    kept["checkpoint"] = AtomicCheckpoint(
        best_path, monitor="val_loss", save_best_only=True, initial_value_threshold=best_so_far
    )
    tracker = TrainingState(
        state_dir, fingerprint, stage=stage, state=state, callbacks=kept, invocation=invocation
    )
    start = state["next_epoch"] if state else first_epoch
    if not (state and state["stopped"]) and start < first_epoch + epochs:
        set_loader_epoch(data["train"], start)
        model.fit(
            data["train"],
            validation_data=data["val"],
            # The loader shuffles, seeded by epoch; Keras' own shuffle would reorder its batches
            # from the global random state, which a resumed run cannot restore.
            shuffle=False,
            epochs=first_epoch + epochs,
            initial_epoch=start,
            verbose=config.verbose,
            # The check first: no callback may save or record an epoch whose loss is not finite.
            callbacks=[StopOnNonFiniteLoss(), *kept.values(), tracker, *callbacks],
        )
    tracker.finish()
    return tracker.history, state is not None


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stop training with an error when an epoch ends with a loss that is NaN or infinite (a
    diverged run must not be checkpointed, resumed or written as results)."""

    def on_epoch_end(self, epoch, logs=None):
        bad = {
            key: value
            for key, value in (logs or {}).items()
            if key.endswith("loss") and not math.isfinite(float(value))
        }
        if bad:
            rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            raise AgegenderError(
                f"Training diverged in epoch {epoch + 1}: {bad}. Nothing was saved for this "
                f"epoch and no results are written. Lower the learning rate (it was {rate:g}) "
                "and run again; the run resumes from its last good epoch."
            )


class AtomicCheckpoint(keras.callbacks.ModelCheckpoint):
    """`ModelCheckpoint` writing to a temporary name beside its file, renamed into place once
    complete: a process killed during the write leaves the previous best model, not part of one
    (Keras writes in place)."""

    def _get_file_path(self, epoch, batch, logs):
        return str(temporary_name(Path(self.filepath)))

    def _save_model(self, epoch, batch, logs):
        with replacing(Path(self.filepath)), portable(self.model):
            super()._save_model(epoch, batch, logs)


def set_loader_epoch(loader, epoch: int) -> None:
    """Give a resumed shuffling loader the order it would have had at `epoch`."""
    if getattr(loader, "shuffle", False):
        loader.set_epoch(epoch)
