"""How to train: `TrainingConfig`, every field recorded in the provenance (Keras-free)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from agegender.checks import check_choice, check_non_negative_int
from agegender.training.distribution import check_devices

# Per-head loss of the age in years, by the Keras loss it names.
AGE_LOSSES = {"mae": "mean_absolute_error", "mse": "mean_squared_error", "huber": "huber"}
# How the learning rate moves: lowered when the validation loss stalls, or a cosine decay over the
# stage's epochs (to `min_learning_rate`).
SCHEDULES = ("plateau", "cosine")
MAX_LEARNING_RATE = 1.0


@dataclass(frozen=True)
class TrainingConfig:
    """How to train; every field is recorded in the provenance.

    Attributes:
        epochs: epochs of the first stage (the whole model, or the heads of a frozen base).
        learning_rate: learning rate of the first stage.
        optimizer: a Keras optimizer name, e.g. ``"adam"`` or ``"adamw"``.
        weight_decay: decoupled weight decay of the optimiser (0: none).
        schedule: ``"plateau"`` (lower the rate by `reduce_lr_factor` when the validation loss
            stalls) or ``"cosine"`` (decay it to `min_learning_rate` over the stage's epochs).
        age_loss: ``"mae"``, ``"mse"`` or ``"huber"`` (on the age in years).
        age_loss_weight, gender_loss_weight: weights of the two losses in the total.
        early_stopping_patience: epochs without a better validation loss before stopping.
        reduce_lr_patience: epochs without a better validation loss before lowering the rate
            (``schedule="plateau"``).
        reduce_lr_factor: factor of each lowering.
        min_learning_rate: the rate is never lowered below this.
        fine_tune_epochs: epochs of the second stage (models whose spec has a ``fine_tune``
            stage; 0 for none).
        fine_tune_blocks: top blocks of the base unfrozen in the second stage.
        fine_tune_learning_rate: learning rate of the second stage.
        seed: seed of everything random (`keras.utils.set_random_seed`).
        mixed_precision: float16 compute with float32 outputs; None means "on GPU only"
            (`default_precision`).
        jit_compile: compile the training step with XLA; None means `default_jit_compile`.
        devices: ``"all"`` (every visible accelerator; one device on a machine without any) or
            how many devices to train on, data-parallel (`agegender.training.distribution`): each
            step's global batch is the loaders' batch, split over them, and the learning rates
            are for one device's share (multiplied by √devices).
        bootstrap_resamples: resamples of the confidence intervals.
        verbose: Keras' verbosity (``"auto"``, 0, 1, 2).
    """

    epochs: int = 10
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    schedule: str = "plateau"
    age_loss: str = "mae"
    age_loss_weight: float = 1.0
    gender_loss_weight: float = 1.0
    early_stopping_patience: int = 5
    reduce_lr_patience: int = 2
    reduce_lr_factor: float = 0.5
    min_learning_rate: float = 1e-6
    fine_tune_epochs: int = 0
    fine_tune_blocks: int = 3
    fine_tune_learning_rate: float = 1e-4
    seed: int = 0
    mixed_precision: bool | None = None
    jit_compile: bool | None = None
    devices: int | str = "all"
    bootstrap_resamples: int = 1000
    verbose: int | str = "auto"

    def __post_init__(self):
        counts = ("epochs", "fine_tune_epochs", "early_stopping_patience", "reduce_lr_patience")
        check_non_negative_int(
            **{key: getattr(self, key) for key in (*counts, "fine_tune_blocks", "seed")}
        )
        if self.epochs + self.fine_tune_epochs < 1:
            raise ValueError(
                "There must be at least one epoch to train. Received: "
                f"epochs={self.epochs}, fine_tune_epochs={self.fine_tune_epochs}"
            )
        check_choice(age_loss=self.age_loss, choices=tuple(AGE_LOSSES))
        check_choice(schedule=self.schedule, choices=SCHEDULES)
        check_devices(self.devices)
        self._check_rates()

    def _check_rates(self) -> None:
        for key in ("learning_rate", "fine_tune_learning_rate", "min_learning_rate"):
            if not 0 < getattr(self, key) <= MAX_LEARNING_RATE:
                raise ValueError(
                    f"{key} must be above 0 and at most {MAX_LEARNING_RATE} (a higher rate "
                    f"makes these optimisers diverge). Received: {key}={getattr(self, key)}"
                )
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
        if not 0 <= self.weight_decay < 1:
            raise ValueError(
                f"weight_decay must be in [0, 1). Received: weight_decay={self.weight_decay}"
            )

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))
