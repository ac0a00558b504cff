"""Run one experiment: build, compile, fit (resumably), restore the best model, evaluate, record.

`run_experiment` is the one entry point. It writes into the results folder given by the caller::

    history.csv       one row per epoch (both stages for fine-tuning), no gaps, no repeats
    metrics.json      test metrics with bootstrap intervals, per group (`evaluation.summarize`)
    predictions.csv   one row per test image
    provenance.json   parameters, seed, backend, devices, weights, versions, commit, wall time

and keeps what must not be committed in a work folder: the best model (``best.keras``), the
end-to-end model (``model.keras``), cached features, and the training state that lets an
interrupted run continue from its last finished epoch when it is started again.

Only `keras` and `keras.ops` are used, so it runs on the TensorFlow, JAX and torch backends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import keras
import numpy as np
import pandas as pd
from keras import ops

from agegender import evaluation, models
from agegender.data.loader import FaceBatches
from agegender.files import write_json_atomic, write_text_atomic
from agegender.provenance import on_gpu, software_and_machine

AGE_LOSSES = {"mae": "mean_absolute_error", "mse": "mean_squared_error", "huber": "huber"}
FEATURE_MODELS = ("vgg16_features",)  # heads trained on cached features of a frozen base
FINE_TUNE_MODELS = ("resnet50_finetune",)


@dataclass(frozen=True)
class TrainingConfig:
    """How to train; every field is recorded in the provenance.

    Attributes:
        epochs: epochs of the first stage (the whole model, or the heads of a frozen base).
        learning_rate: learning rate of the first stage.
        optimizer: a Keras optimizer name, e.g. ``"adam"``.
        age_loss: ``"mae"``, ``"mse"`` or ``"huber"`` (on the age in years).
        age_loss_weight, gender_loss_weight: weights of the two losses in the total.
        early_stopping_patience: epochs without a better validation loss before stopping.
        reduce_lr_patience: epochs without a better validation loss before lowering the rate.
        reduce_lr_factor: factor of each lowering.
        min_learning_rate: the rate is never lowered below this.
        fine_tune_epochs: epochs of the second stage (ResNet-50 only; 0 for none).
        fine_tune_blocks: top blocks of the base unfrozen in the second stage.
        fine_tune_learning_rate: learning rate of the second stage.
        seed: seed of everything random (`keras.utils.set_random_seed`).
        mixed_precision: float16 compute with float32 outputs; None means "on GPU only"
            (`default_precision`).
        jit_compile: compile the training step with XLA; None means `default_jit_compile`.
        bootstrap_resamples: resamples of the confidence intervals.
        verbose: Keras' verbosity (``"auto"``, 0, 1, 2).
    """

    epochs: int = 10
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    age_loss: str = "mae"
    age_loss_weight: float = 1.0
    gender_loss_weight: float = 1.0
    early_stopping_patience: int = 5
    reduce_lr_patience: int = 2
    reduce_lr_factor: float = 0.5
    min_learning_rate: float = 1e-6
    fine_tune_epochs: int = 0
    fine_tune_blocks: int = 3
    fine_tune_learning_rate: float = 1e-5
    seed: int = 0
    mixed_precision: bool | None = None
    jit_compile: bool | None = None
    bootstrap_resamples: int = 1000
    verbose: int | str = "auto"

    def __post_init__(self):
        for key in (
            "epochs",
            "fine_tune_epochs",
            "early_stopping_patience",
            "reduce_lr_patience",
            "fine_tune_blocks",
        ):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{key} must be a non-negative integer. Received: {key}={value!r}")
        if self.epochs + self.fine_tune_epochs < 1:
            raise ValueError(
                "There must be at least one epoch to train. Received: "
                f"epochs={self.epochs}, fine_tune_epochs={self.fine_tune_epochs}"
            )
        if self.age_loss not in AGE_LOSSES:
            raise ValueError(
                f"age_loss must be one of {tuple(AGE_LOSSES)}. Received: age_loss={self.age_loss!r}"
            )
        for key in ("learning_rate", "fine_tune_learning_rate", "min_learning_rate"):
            if not getattr(self, key) > 0:
                raise ValueError(f"{key} must be positive. Received: {key}={getattr(self, key)}")
        if not 0 < self.reduce_lr_factor < 1:
            raise ValueError(
                "reduce_lr_factor must be between 0 and 1. "
                f"Received: reduce_lr_factor={self.reduce_lr_factor}"
            )
        if min(self.age_loss_weight, self.gender_loss_weight) < 0:
            raise ValueError(
                "Loss weights must not be negative. Received: "
                f"{self.age_loss_weight}, {self.gender_loss_weight}"
            )


@dataclass
class Experiment:
    """What `run_experiment` produced (the files are also in `results_dir`)."""

    model: keras.Model  # the best model, end to end (images -> age, gender)
    history: pd.DataFrame
    predictions: pd.DataFrame
    metrics: dict
    provenance: dict
    results_dir: Path
    model_path: Path


# --- compiling and predicting ------------------------------------------------------------------


def compile_model(
    model: keras.Model,
    *,
    learning_rate: float,
    optimizer: str = "adam",
    age_loss: str = "mae",
    age_loss_weight: float = 1.0,
    gender_loss_weight: float = 1.0,
    jit_compile: bool | str = "auto",
) -> keras.Model:
    """Compile a two-headed model: per-head losses and weights; age MAE, gender accuracy and AUC.

    Args:
        model: a model with the outputs ``age`` and ``gender`` (or heads alone).
        learning_rate: the optimiser's learning rate.
        optimizer: a Keras optimizer name.
        age_loss: ``"mae"``, ``"mse"`` or ``"huber"``.
        age_loss_weight, gender_loss_weight: weights of the two losses.
        jit_compile: compile the steps with XLA (True), not (False), or as the backend chooses
            (``"auto"``: always on JAX, on TensorFlow only on a GPU).

    Returns:
        The same model, compiled.
    """
    if age_loss not in AGE_LOSSES:
        raise ValueError(f"age_loss must be one of {tuple(AGE_LOSSES)}. Received: {age_loss=}")
    model.compile(
        optimizer=keras.optimizers.get(
            {"class_name": optimizer, "config": {"learning_rate": learning_rate}}
        ),
        loss={"age": AGE_LOSSES[age_loss], "gender": "binary_crossentropy"},
        loss_weights={"age": age_loss_weight, "gender": gender_loss_weight},
        metrics={
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
    return evaluation.predictions_table(
        loader.files, loader.ages, outputs["age"], loader.genders, outputs["gender"]
    )


# --- the experiment ----------------------------------------------------------------------------


def run_experiment(
    name: str,
    train,
    val,
    test,
    *,
    results_dir,
    work_dir,
    config: TrainingConfig | None = None,
    model_options: dict | None = None,
    feature_cache_dir=None,
    provenance: dict | None = None,
    callbacks=(),
    fresh: bool = False,
) -> Experiment:
    """Train and evaluate one model, and write its results.

    Started again after an interruption (same arguments, same work folder), it continues from
    the last finished epoch; started again after it finished, it re-evaluates the best model.

    Args:
        name: a model name (`models.MODEL_NAMES`).
        train, val, test: `FaceBatches` loaders; image size and channels are read from them.
        results_dir: where the four result files are written.
        work_dir: this run's folder for models, features and training state (not committed).
        config: the `TrainingConfig` (default: its defaults).
        model_options: keyword arguments of the builder (`models.build`), e.g. ``weights``
            (default ``"imagenet"`` for the transfer models, None for the CNN), ``age_head``,
            ``augmentation`` (a `models.Augmentation`).
        feature_cache_dir: where VGG16 features are cached (default ``work_dir/features``); share
            it between runs to compute the features once.
        provenance: extra provenance entries (e.g. dataset and split sha256, profile).
        callbacks: extra Keras callbacks; they run after the epoch's state has been saved.
        fresh: forget any saved state in `work_dir` and start over.

    Returns:
        The `Experiment`.
    """
    started = time.time()
    config = config or TrainingConfig()
    options = dict(model_options or {})
    _check_choice(name=name, choices=models.MODEL_NAMES)
    if config.fine_tune_epochs and name not in FINE_TUNE_MODELS:
        raise ValueError(
            f"Only {FINE_TUNE_MODELS} have a fine-tuning stage. "
            f"Received: name={name!r}, fine_tune_epochs={config.fine_tune_epochs}"
        )
    for key in ("image_size", "channels"):
        if key in options:
            raise ValueError(
                f"{key} is read from the loaders' images; leave it out of "
                f"model_options. Received: {key}={options[key]!r}"
            )
    augmentation = options.get("augmentation")
    if name in FEATURE_MODELS and augmentation and augmentation != models.Augmentation.off():
        raise ValueError(
            f"{name} trains on features computed once, without augmentation; leave it out. "
            f"Received: augmentation={augmentation!r}"
        )
    for split_name, loader in (("val", val), ("test", test)):
        if getattr(loader, "shuffle", False):
            raise ValueError(f"The {split_name} loader must not shuffle. Received: shuffle=True")
    results_dir, work_dir = Path(results_dir), Path(work_dir)
    image_size, channels = int(train.images.shape[1]), int(train.images.shape[-1])

    keras.utils.set_random_seed(config.seed)
    weights = models.resolve_weights(
        options.pop("weights", default_weights(name)), base=models.imagenet_base_name(name)
    )
    options.setdefault("seed", config.seed)
    gpu = on_gpu()
    mixed = (
        default_precision(gpu=gpu) != "float32"
        if config.mixed_precision is None
        else config.mixed_precision
    )
    jit = (
        default_jit_compile(keras.backend.backend(), name, gpu=gpu, image_size=image_size)
        if config.jit_compile is None
        else config.jit_compile
    )
    parameters = {
        "model": name,
        "image_size": image_size,
        "channels": channels,
        "config": dataclasses.asdict(config),
        "model_options": _plain(options),
        "weights": weights.to_dict(),
        "mixed_precision": mixed,
        "jit_compile": jit,
        "data": {
            split_name: _loader_summary(loader)
            for split_name, loader in (("train", train), ("val", val), ("test", test))
        },
    }
    fingerprint = _digest(parameters)
    if fresh or _fingerprint_changed(work_dir, fingerprint):
        _clear_state(work_dir)
    write_json_atomic(work_dir / "fingerprint.json", {"fingerprint": fingerprint})

    with dtype_policy("mixed_float16" if mixed else "float32"):
        model = models.build(
            name, image_size=image_size, channels=channels, weights=weights, **options
        )
        if name in FEATURE_MODELS:
            extractor, fit_model = models.split(model)
            cache = Path(feature_cache_dir) if feature_cache_dir else work_dir / "features"
            data, seconds = {}, []
            for split_name, loader in (("train", train), ("val", val), ("test", test)):
                data[split_name], spent = _feature_batches(
                    extractor, loader, cache, config, split_name
                )
                seconds.append(spent)
            feature_seconds = None if None in seconds else round(sum(seconds), 3)
        else:
            extractor, fit_model = None, model
            data, feature_seconds = {"train": train, "val": val, "test": test}, None

        best_path = work_dir / "best.keras"
        stages = [("train", config.epochs, config.learning_rate)]
        if config.fine_tune_epochs:
            stages.append(("fine_tune", config.fine_tune_epochs, config.fine_tune_learning_rate))
        history, resumed = [], False
        for stage, epochs, learning_rate in stages:
            if not epochs:
                continue
            if stage == "fine_tune":
                if best_path.is_file():
                    fit_model = models.load_checkpoint(best_path)
                models.unfreeze_top_blocks(fit_model, config.fine_tune_blocks)
            compile_model(
                fit_model,
                learning_rate=learning_rate,
                optimizer=config.optimizer,
                age_loss=config.age_loss,
                age_loss_weight=config.age_loss_weight,
                gender_loss_weight=config.gender_loss_weight,
                jit_compile=jit,
            )
            rows, stage_resumed = _fit_stage(
                fit_model,
                data,
                stage=stage,
                first_epoch=len(history),
                epochs=epochs,
                config=config,
                state_dir=work_dir / "state" / stage,
                best_path=best_path,
                best_so_far=min((r["val_loss"] for r in history if "val_loss" in r), default=None),
                fingerprint=fingerprint,
                callbacks=callbacks,
            )
            history += rows
            resumed = resumed or stage_resumed

        best = models.load_checkpoint(best_path) if best_path.is_file() else fit_model
        if extractor is not None:
            model = models.assemble(extractor, best, name=name)
            model_path = work_dir / "model.keras"
            model.save(model_path)
        else:
            model, model_path = best, best_path
        val_table = predict(best, data["val"])
        test_table = predict(best, data["test"])

    history_table = _history_table(history)
    summary = evaluation.summarize(
        test_table, resamples=config.bootstrap_resamples, seed=config.seed
    )
    summary["validation"] = evaluation.to_json_ready(evaluation.metrics(val_table))
    summary["best_epoch"] = _best_epoch(history_table)
    record = {
        **(provenance or {}),
        "parameters": parameters,
        "seed": config.seed,
        "dtype_policy": "mixed_float16" if mixed else "float32",
        "weights": weights.to_dict(),
        **software_and_machine(),
        "resumed": resumed,
        "epochs_run": len(history_table),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        # Summed over every invocation of an interrupted run (each epoch's time is kept in
        # its history row); wall_time_s is this invocation only.
        "training_time_s": _training_seconds(history_table),
        "feature_extraction_s": feature_seconds,
        "wall_time_s": round(time.time() - started, 3),
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(results_dir / "history.csv", history_table.to_csv(index=False))
    write_text_atomic(results_dir / "predictions.csv", test_table.to_csv(index=False))
    write_json_atomic(results_dir / "metrics.json", summary)
    write_json_atomic(results_dir / "provenance.json", evaluation.to_json_ready(record))
    return Experiment(
        model=model,
        history=history_table,
        predictions=test_table,
        metrics=summary,
        provenance=record,
        results_dir=results_dir,
        model_path=model_path,
    )


def default_weights(name: str):
    """ImageNet for the transfer models, None (from scratch) for the custom CNN."""
    return "imagenet" if models.imagenet_base_name(name) else None


def _feature_batches(extractor, loader, cache_dir: Path, config: TrainingConfig, split_name: str):
    in_order = FaceBatches(
        loader.images,
        loader.rows,
        loader.all_ages,
        loader.all_genders,
        loader.all_files,
        batch_size=loader.batch_size,
    )
    features, seconds = models.extract_features(
        extractor, in_order, cache_dir, verbose=0 if config.verbose == 0 else 1
    )
    # The same loader class serves the cached features: row i of `features` is image i.
    batches = FaceBatches(
        features,
        np.arange(len(features)),
        loader.ages,
        loader.genders,
        loader.files,
        batch_size=loader.batch_size,
        shuffle=split_name == "train" and loader.shuffle,
        seed=config.seed,
    )
    return batches, seconds


def _fit_stage(
    model,
    data,
    *,
    stage,
    first_epoch,
    epochs,
    config,
    state_dir,
    best_path,
    best_so_far,
    fingerprint,
    callbacks,
) -> tuple[list[dict], bool]:
    """Fit one stage with its callbacks; continue from `state_dir` when a state is saved there."""
    state = TrainingState.read(state_dir, fingerprint)
    if state is not None and state["done"]:
        return state["history"], True
    early_stopping = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=config.early_stopping_patience
    )
    reduce_lr = keras.callbacks.ReduceLROnPlateau(
        monitor="val_loss",
        factor=config.reduce_lr_factor,
        patience=config.reduce_lr_patience,
        min_lr=config.min_learning_rate,
    )
    checkpoint = keras.callbacks.ModelCheckpoint(
        best_path, monitor="val_loss", save_best_only=True, initial_value_threshold=best_so_far
    )
    tracker = TrainingState(
        state_dir,
        fingerprint,
        stage=stage,
        state=state,
        callbacks={
            "early_stopping": early_stopping,
            "reduce_lr": reduce_lr,
            "checkpoint": checkpoint,
        },
    )
    start = state["next_epoch"] if state else first_epoch
    if not (state and state["stopped"]) and start < first_epoch + epochs:
        _set_loader_epoch(data["train"], start)
        model.fit(
            data["train"],
            validation_data=data["val"],
            epochs=first_epoch + epochs,
            initial_epoch=start,
            verbose=config.verbose,
            callbacks=[early_stopping, reduce_lr, checkpoint, tracker, *callbacks],
        )
    tracker.finish()
    return tracker.history, state is not None


def _set_loader_epoch(loader, epoch: int) -> None:
    """Give a resumed shuffling loader the order it would have had at `epoch`."""
    if getattr(loader, "shuffle", False):
        loader.set_epoch(epoch)


class TrainingState(keras.callbacks.Callback):
    """Saves after every epoch what an interrupted stage needs to continue, and restores it.

    One folder per stage holds ``history.csv`` (the epochs so far, to watch a run),
    ``state.json`` (the next epoch, the history so far, whether early stopping fired, the other
    callbacks' counters) and the weights with the optimiser's state (``epoch-N.weights.h5``).
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
        self, folder: Path, fingerprint: str, *, stage: str, state: dict | None, callbacks: dict
    ):
        super().__init__()
        self.folder = Path(folder)
        self.fingerprint = fingerprint
        self.stage = stage
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

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        row = {
            "epoch": epoch,
            "stage": self.stage,
            "learning_rate": float(ops.convert_to_numpy(self.model.optimizer.learning_rate)),
            "epoch_time_s": round(time.perf_counter() - self.epoch_started, 3),
        }
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


# --- environment -------------------------------------------------------------------------------


# XLA for the training step with TensorFlow on a CPU: the smallest image side at which it is on,
# per model (None: never), as `agegender bench` measured it on a 2-core CPU (the performance
# appendix). It made the custom CNN 1.8 times as fast at 64 px and 1.3 times at 128 px. It made
# ResNet-50 slower at 64 px (0.29 times in stage 1, 0.83 in stage 2), where TensorFlow's own
# (oneDNN) convolutions win, and faster at 128 px (1.56 and 2.39 times); sizes in between were not
# measured. The VGG16 heads train on cached features; XLA was not measured for them.
CPU_XLA_FROM_SIZE = {"custom_cnn": 0, "vgg16_features": None, "resnet50_finetune": 128}


def default_jit_compile(backend: str, model: str, *, gpu: bool, image_size: int) -> bool | str:
    """Whether to compile a model's training step with XLA, when the config does not say.

    Always on JAX (an uncompiled JAX step is many times slower) and on TensorFlow on a GPU; on
    TensorFlow on a CPU where it was measured faster (`CPU_XLA_FROM_SIZE`); Keras' choice (off)
    on torch.
    """
    if backend == "jax" or (backend == "tensorflow" and gpu):
        return True
    if backend == "tensorflow":
        smallest = CPU_XLA_FROM_SIZE[model]
        return smallest is not None and image_size >= smallest
    return "auto"


def default_precision(*, gpu: bool) -> str:
    """``mixed_float16`` on a GPU; ``float32`` on a CPU, where `agegender bench` measured
    ``mixed_bfloat16`` several times slower (a CPU without bfloat16 arithmetic emulates it)."""
    return "mixed_float16" if gpu else "float32"


@contextlib.contextmanager
def dtype_policy(name: str):
    """Use a global Keras dtype policy (e.g. ``"mixed_float16"``) inside a ``with`` block."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


# --- small helpers -----------------------------------------------------------------------------


def _history_table(rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    if table.empty:
        return pd.DataFrame(columns=["epoch", "stage"])
    first = ["epoch", "stage", "learning_rate", "epoch_time_s", "loss", "val_loss"]
    columns = [c for c in first if c in table] + sorted(c for c in table if c not in first)
    return table[columns].sort_values("epoch", kind="stable").reset_index(drop=True)


def _training_seconds(history: pd.DataFrame) -> float | None:
    """The epochs' summed time; None when some epoch was not timed (a run from before)."""
    times = history.get("epoch_time_s")
    if times is None or times.isna().any():
        return None
    return round(float(times.sum()), 3)


def _best_epoch(history: pd.DataFrame) -> int | None:
    if "val_loss" not in history or history["val_loss"].isna().all():
        return None
    return int(history.loc[history["val_loss"].idxmin(), "epoch"])


def _loader_summary(loader) -> dict:
    rows = np.asarray(loader.rows, dtype=np.int64)
    return {
        "images": len(rows),
        "batch_size": loader.batch_size,
        "rows_sha256": hashlib.sha256(rows.tobytes()).hexdigest(),
    }


def _fingerprint_changed(work_dir: Path, fingerprint: str) -> bool:
    path = work_dir / "fingerprint.json"
    return path.is_file() and json.loads(path.read_text()).get("fingerprint") != fingerprint


def _clear_state(work_dir: Path) -> None:
    shutil.rmtree(work_dir / "state", ignore_errors=True)
    for name in ("best.keras", "model.keras"):
        (work_dir / name).unlink(missing_ok=True)


def _digest(payload) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _plain(value):
    """Options made JSON-friendly: dataclasses as dicts, paths as strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _number(value):
    if value is None or isinstance(value, bool | int | str):
        return value
    return float(ops.convert_to_numpy(value))


def _check_choice(*, choices, **values) -> None:
    for key, value in values.items():
        if value not in choices:
            raise ValueError(f"{key} must be one of {choices}. Received: {key}={value!r}")
