"""Run one experiment: check, plan, fit the stages, evaluate, write.

`run_experiment` is the one entry point; each of its steps is a function of its own::

    check_request -> plan_run -> model_inputs -> fit_stages -> evaluate -> run_record -> write

It writes the run's files with `agegender.results.store` and keeps what must not be committed in
a work folder: the best model (``best.keras``), the end-to-end model of a model trained on
features (``model.keras``), cached features, and the training state that lets an interrupted run
continue from its last finished epoch when it is started again.

Only `keras` and `keras.ops` are used, so it runs on the TensorFlow, JAX and torch backends.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import keras
import pandas as pd

from agegender import evaluation
from agegender.files import json_sha256, replacing, rows_sha256
from agegender.models.builders import build, load_checkpoint
from agegender.models.finetune import unfreeze_top_blocks
from agegender.models.heads import assemble, parts
from agegender.models.layers import Augmentation
from agegender.models.specs import FINE_TUNE, MODELS, ModelSpec, spec
from agegender.models.weights import WeightsInfo, resolve_weights
from agegender.provenance import on_gpu, software_and_machine
from agegender.results import store
from agegender.training import history as histories
from agegender.training import resume
from agegender.training.config import TrainingConfig
from agegender.training.distribution import Distribution, portable, resolve
from agegender.training.features import feature_batches
from agegender.training.fit import compile_model, fit_stage, predict
from agegender.training.runtime import (
    default_jit_compile,
    default_precision,
    dtype_policy,
    seed_everything,
    xla_allowed,
)

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class RunPlan:
    """What a run will do, decided before any work: the fingerprint guards its saved state."""

    model: ModelSpec
    image_size: int
    channels: int
    weights: WeightsInfo
    options: dict  # the builder's options, less the weights
    mixed_precision: bool
    jit_compile: bool | str
    parameters: dict  # recorded in the provenance
    fingerprint: str
    distribution: Distribution  # the devices it trains on

    def learning_rate(self, rate: float) -> float:
        """A stage's rate for its global batch (`Distribution.learning_rate`)."""
        return self.distribution.learning_rate(rate)

    @property
    def dtype_policy(self) -> str:
        return "mixed_float16" if self.mixed_precision else "float32"


@dataclass(frozen=True)
class ModelInputs:
    """What the stages fit: the whole model on images, or the heads on cached features."""

    fit_model: keras.Model
    data: dict  # split name -> loader
    extractor: keras.Model | None = None  # set when the heads train on its features
    feature_seconds: float | None = None


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

    A run without a test loader is a *selection* run: its results are on the validation split
    (``metrics["split"] == "val"``), so that choosing between settings never reads the test split.

    Started again after an interruption (same arguments, same work folder), it continues from
    the last finished epoch; started again after it finished, it re-evaluates the best model.

    On several devices (``config.devices``), the loaders' batches are the global batches: each is
    split over the devices (`agegender.training.distribution`), so their batch size must be a
    multiple of the devices' number.

    Args:
        name: a model name (`agegender.models.specs.MODELS`).
        train, val, test: `FaceBatches` loaders; image size and channels are read from them;
            `test` None for a selection run.
        results_dir: the run's results folder (`agegender.results.store`).
        work_dir: this run's folder for models, features and training state (not committed).
        config: the `TrainingConfig` (default: its defaults).
        model_options: keyword arguments of the builder (`agegender.models.build`), e.g.
            ``weights`` (default: the spec's), ``age_head``, ``augmentation``.
        feature_cache_dir: where features of a frozen extractor are cached (default
            ``work_dir/features``); share it between runs to compute them once.
        provenance: extra provenance entries (e.g. dataset and split sha256, profile).
        callbacks: extra Keras callbacks; they run after the epoch's state has been saved.
        fresh: forget any saved state in `work_dir` and start over.

    Returns:
        The `Experiment`.
    """
    started = time.time()
    invocation = datetime.now(UTC).isoformat(timespec="microseconds")
    config = config or TrainingConfig()
    loaders = {
        split: loader
        for split, loader in zip(SPLITS, (train, val, test), strict=True)
        if loader is not None
    }
    work_dir = Path(work_dir)
    check_request(name, config, model_options or {}, loaders)
    distribution = resolve(config.devices)
    loaders = split_loaders(loaders, distribution.count)
    deterministic = seed_everything(config.seed)
    plan = plan_run(name, config, model_options or {}, loaders, distribution)
    resume.start(work_dir, plan.fingerprint, fresh=fresh)
    with distribution.scope(), dtype_policy(plan.dtype_policy):
        model = build(
            name,
            image_size=plan.image_size,
            channels=plan.channels,
            weights=plan.weights,
            **plan.options,
        )
        cache_dir = feature_cache_dir or work_dir / "features"
        inputs = model_inputs(model, plan.model, loaders, cache_dir, config)
        history, resumed = fit_stages(inputs, plan, config, work_dir, callbacks, invocation)
        best, model_path, val_table, test_table = evaluate(inputs, plan, work_dir)
    history_table = histories.history_table(history)
    reported = val_table if test_table is None else test_table
    metrics = evaluation.summarize(reported, resamples=config.bootstrap_resamples, seed=config.seed)
    metrics["split"] = "val" if test_table is None else "test"
    metrics["validation"] = evaluation.to_json_ready(evaluation.metrics(val_table))
    metrics["best_epoch"] = histories.best_epoch(history_table)
    record = run_record(plan, config, history_table, inputs, resumed, provenance, started)
    record["invocations"] = histories.invocations(history, invocation)
    record["model_file"] = model_path.name  # in the work folder (`agegender.load_model`)
    record["deterministic_kernels"] = deterministic
    store.write_run(
        Path(results_dir),
        history=history_table,
        predictions=reported,
        metrics=metrics,
        provenance=record,
    )
    return Experiment(
        model=best,
        history=history_table,
        predictions=reported,
        metrics=metrics,
        provenance=record,
        results_dir=Path(results_dir),
        model_path=model_path,
    )


def check_request(name: str, config: TrainingConfig, options: dict, loaders: dict) -> None:
    """Refuse a request that cannot run, before any work.

    Raises:
        ValueError: an unknown model; a fine-tuning stage for a model without one; image size or
            channels in the options (they come from the loaders); augmentation for a model trained
            on features; a shuffling validation or test loader.
    """
    model = spec(name)
    if config.fine_tune_epochs and not model.fine_tunes:
        fine_tuning = tuple(n for n, m in MODELS.items() if m.fine_tunes)
        raise ValueError(
            f"Only {fine_tuning} have a fine-tuning stage. "
            f"Received: name={name!r}, fine_tune_epochs={config.fine_tune_epochs}"
        )
    _check_options(model, options)
    for split_name in ("val", "test"):
        if getattr(loaders.get(split_name), "shuffle", False):
            raise ValueError(f"The {split_name} loader must not shuffle. Received: shuffle=True")


def _check_options(model: ModelSpec, options: dict) -> None:
    for key in ("image_size", "channels"):
        if key in options:
            raise ValueError(
                f"{key} is read from the loaders' images; leave it out of "
                f"model_options. Received: {key}={options[key]!r}"
            )
    augmentation = options.get("augmentation")
    if model.on_features and augmentation and augmentation != Augmentation.off():
        raise ValueError(
            f"{model.name} trains on features computed once, without augmentation; leave it "
            f"out. Received: augmentation={augmentation!r}"
        )


def split_loaders(loaders: dict, devices: int) -> dict:
    """The loaders for `devices` devices (`FaceBatches.split_over`): every batch a multiple of
    `devices` images.

    Raises:
        ValueError: a loader whose batch size is not a multiple of `devices`.
    """
    if devices == 1:
        return loaders
    for split_name, loader in loaders.items():
        if loader.batch_size % devices:
            raise ValueError(
                f"On {devices} devices a batch is split over them: the {split_name} loader's "
                f"batch size must be a multiple of {devices} (a per-device batch size times "
                f"{devices}). Received: batch_size={loader.batch_size}"
            )
    return {split_name: loader.split_over(devices) for split_name, loader in loaders.items()}


def plan_run(
    name: str,
    config: TrainingConfig,
    options: dict,
    loaders: dict,
    distribution: Distribution | None = None,
) -> RunPlan:
    """Decide the weights, precision, XLA and recorded parameters of a checked request."""
    distribution = distribution or resolve(config.devices)
    model, options = spec(name), dict(options)
    train = loaders["train"]
    image_size, channels = int(train.images.shape[1]), int(train.images.shape[-1])
    weights = resolve_weights(options.pop("weights", model.default_weights), base=model.base)
    options.setdefault("seed", config.seed)
    gpu = on_gpu()
    mixed = config.mixed_precision
    if mixed is None:
        mixed = default_precision(gpu=gpu) != "float32"
    jit = config.jit_compile
    if jit is None:
        jit = default_jit_compile(keras.backend.backend(), name, gpu=gpu, image_size=image_size)
    if jit is True and not xla_allowed(keras.backend.backend()):
        jit = False
    parameters = {
        "model": name,
        "image_size": image_size,
        "channels": channels,
        "config": dataclasses.asdict(config),
        "model_options": _plain(options),
        "mixed_precision": mixed,
        "jit_compile": jit,
        "data": {split: _loader_summary(loader) for split, loader in loaders.items()},
    }
    return RunPlan(
        model=model,
        image_size=image_size,
        channels=channels,
        weights=weights,
        options=options,
        mixed_precision=mixed,
        jit_compile=jit,
        parameters=parameters,
        fingerprint=json_sha256(_fingerprinted(parameters, weights, distribution)),
        distribution=distribution,
    )


def _fingerprinted(parameters: dict, weights: WeightsInfo, distribution: Distribution) -> dict:
    """What a saved state must have been made with: on one device what it was before runs could
    use several (so that an interrupted run resumes with newer code), on several the count."""
    if distribution.count == 1:
        config = {k: v for k, v in parameters["config"].items() if k != "devices"}
        return {**parameters, "config": config, "weights": weights.to_dict()}
    return {**parameters, "weights": weights.to_dict(), "devices_used": distribution.count}


def model_inputs(
    model: keras.Model, model_spec: ModelSpec, loaders: dict, cache_dir, config: TrainingConfig
) -> ModelInputs:
    """The model and data the stages fit: for a model trained on features, its heads and the
    cached features of its extractor (computed here once); else the model and the loaders."""
    if not model_spec.on_features:
        return ModelInputs(fit_model=model, data=dict(loaders))
    extractor, head_model = parts(model)
    data, seconds = {}, []
    for split_name, loader in loaders.items():
        data[split_name], spent = feature_batches(
            extractor,
            loader,
            Path(cache_dir),
            train=split_name == "train",
            seed=config.seed,
            verbose=0 if config.verbose == 0 else 1,
        )
        seconds.append(spent)
    return ModelInputs(
        fit_model=head_model,
        data=data,
        extractor=extractor,
        feature_seconds=None if None in seconds else round(sum(seconds), 3),
    )


def fit_stages(
    inputs: ModelInputs,
    plan: RunPlan,
    config: TrainingConfig,
    work_dir,
    callbacks,
    invocation: str | None = None,
):
    """Fit the spec's stages in turn, each resumable; returns the history rows (each naming the
    invocation that trained it) and whether any stage continued from a saved state."""
    best_path = work_dir / "best.keras"
    fit_model, history, resumed = inputs.fit_model, [], False
    for stage, epochs, learning_rate in _stages(plan.model, config):
        if stage == FINE_TUNE:
            if best_path.is_file():
                fit_model = load_checkpoint(best_path)
            unfreeze_top_blocks(fit_model, config.fine_tune_blocks)
        plan.distribution.prepare(fit_model)
        compile_model(
            fit_model,
            learning_rate=plan.learning_rate(learning_rate),
            optimizer=config.optimizer,
            weight_decay=config.weight_decay,
            decay_steps=len(inputs.data["train"]) * epochs if config.schedule == "cosine" else None,
            min_learning_rate=config.min_learning_rate,
            age_loss=config.age_loss,
            age_loss_weight=config.age_loss_weight,
            gender_loss_weight=config.gender_loss_weight,
            jit_compile=plan.jit_compile,
        )
        rows, stage_resumed = fit_stage(
            fit_model,
            inputs.data,
            stage=stage,
            first_epoch=len(history),
            epochs=epochs,
            config=config,
            state_dir=work_dir / "state" / stage,
            best_path=best_path,
            best_so_far=histories.best_val_loss(history),
            fingerprint=plan.fingerprint,
            callbacks=callbacks,
            invocation=invocation,
        )
        history += rows
        resumed = resumed or stage_resumed
    return history, resumed


def evaluate(inputs: ModelInputs, plan: RunPlan, work_dir: Path):
    """The best model end to end, where it is saved, and its validation and test predictions
    (None without a test loader)."""
    best_path = work_dir / "best.keras"
    best = load_checkpoint(best_path) if best_path.is_file() else inputs.fit_model
    val_table = predict(best, inputs.data["val"])
    test_table = predict(best, inputs.data["test"]) if "test" in inputs.data else None
    if inputs.extractor is None:
        return best, best_path, val_table, test_table
    model = assemble(inputs.extractor, best, name=plan.model.name)
    model_path = work_dir / "model.keras"
    with replacing(model_path) as tmp, portable(model):
        model.save(tmp)
    return model, model_path, val_table, test_table


def run_record(plan, config, history_table, inputs, resumed, provenance, started) -> dict:
    """The run's provenance: the caller's entries, the plan, the software and the times."""
    return {
        **(provenance or {}),
        "parameters": plan.parameters,
        "seed": config.seed,
        "dtype_policy": plan.dtype_policy,
        "weights": plan.weights.to_dict(),
        **software_and_machine(),
        # The devices it trained on, the engine, the batch sizes and the learning-rate rule.
        "distribution": plan.distribution.record(
            global_batch_size=plan.parameters["data"]["train"]["batch_size"],
            rates={
                stage: plan.learning_rate(rate) for stage, _, rate in _stages(plan.model, config)
            },
        ),
        "resumed": resumed,
        "epochs_run": len(history_table),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        # Summed over every invocation of an interrupted run (each epoch's time is kept in
        # its history row); wall_time_s is this invocation only.
        "training_time_s": histories.training_seconds(history_table),
        "feature_extraction_s": inputs.feature_seconds,
        "wall_time_s": round(time.time() - started, 3),
    }


def _stages(model: ModelSpec, config: TrainingConfig):
    epochs = {"train": config.epochs, FINE_TUNE: config.fine_tune_epochs}
    rates = {"train": config.learning_rate, FINE_TUNE: config.fine_tune_learning_rate}
    return [(stage, epochs[stage], rates[stage]) for stage in model.stages if epochs[stage]]


def _loader_summary(loader) -> dict:
    return {
        "images": len(loader.rows),
        "batch_size": loader.batch_size,
        "rows_sha256": rows_sha256(loader.rows),
    }


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
