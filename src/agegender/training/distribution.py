"""Data-parallel training on several devices: which devices, which engine, which learning rate.

A run's ``devices`` setting (`TrainingConfig.devices`) is ``"all"`` (every visible accelerator; on
a machine without one, a single device and no strategy) or a positive number of devices. With N
devices, every step sees a *global* batch of N times the per-device ``batch_size``, split evenly
over the devices, and each device holds a full copy of the weights:

- JAX: Keras' own `keras.distribution.DataParallel` over a one-axis `DeviceMesh`; Keras shards
  each global batch over the mesh and XLA computes as on one device (batch normalisation, for
  instance, normalises over the global batch).
- TensorFlow: `tf.distribute.MirroredStrategy`. Keras 3's distribution API has only a prototype
  for TensorFlow (DTensor, marked "DO NOT USE" in Keras 3.15), while Keras' TensorFlow trainer
  runs `MirroredStrategy` (models built in its scope) as its documented multi-GPU path. Batch
  normalisation is synchronised over the replicas while training (`synchronized=True`, only
  while fitting: a saved model never carries it, so it loads on every backend), so that N devices
  compute what one device computes on the global batch, as on JAX.
- torch: one device (Keras has no data-parallel engine for it here).

The learning rate follows the square-root rule of adaptive optimisers (Adam, AdamW; Malladi et
al., 2022, "On the SDEs and scaling rules for adaptive gradient algorithms"): a setting's rate is
for the per-device batch, and with N devices (N times the batch) it becomes √N times the rate
(`LEARNING_RATE_SCALING`), in every stage; the floor ``min_learning_rate`` is kept. A run records
the devices, the engine, both batch sizes and the factor (`Distribution.record`).

Keras-free at import: `check_devices` serves the checks made before any work.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

from agegender.errors import AgegenderError

ALL = "all"
LEARNING_RATE_SCALING = "sqrt"  # the rate of N devices is √N times the per-device batch's rate
ACCELERATORS = ("gpu", "tpu", "cuda")
STRATEGIES = {
    "jax": "keras.distribution.DataParallel",
    "tensorflow": "tf.distribute.MirroredStrategy",
}


def check_devices(devices) -> None:
    """Refuse a ``devices`` value that is neither ``"all"`` nor a positive integer (Keras-free)."""
    if devices == ALL:
        return
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ValueError(
            'devices must be "all" (every visible accelerator) or a positive integer (that many '
            f"devices). Received: devices={devices!r}"
        )


def visible_devices() -> list[str]:
    """The devices the Keras backend can compute on, as ``"gpu:0"``, ...: its accelerators when it
    has any, else its CPU devices (one, unless the backend was told to make more, as tests do)."""
    import keras

    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return [f"gpu:{i}" for i in range(count)] or ["cpu:0"]
    return [str(device).lower() for device in keras.distribution.list_devices()]


def is_accelerator(device: str) -> bool:
    return device.split(":")[0] in ACCELERATORS


def resolve(devices) -> Distribution:
    """The devices a run trains on, checked against what the backend sees.

    Args:
        devices: ``"all"`` (every visible accelerator; one device on a machine without any) or a
            positive integer (the first that many visible devices).

    Raises:
        ValueError: a value of another form.
        AgegenderError: more devices than visible, or several devices on the torch backend.
    """
    import keras

    check_devices(devices)
    backend = keras.backend.backend()
    visible = visible_devices()
    accelerators = [device for device in visible if is_accelerator(device)]
    if devices == ALL:
        return Distribution(backend, tuple(accelerators or visible[:1]))
    if devices > 1 and backend not in STRATEGIES:
        raise AgegenderError(
            f"Training on several devices needs the JAX or TensorFlow backend; this is {backend}. "
            f"Set devices=1, or KERAS_BACKEND=jax. Received: devices={devices}"
        )
    if devices > len(visible):
        raise AgegenderError(
            f"devices={devices} asks for more devices than the {backend} backend sees: "
            f'{len(visible)} ({", ".join(visible)}). Use devices="all" or at most {len(visible)}.'
        )
    return Distribution(backend, tuple(visible[:devices]))


@dataclass(frozen=True)
class Distribution:
    """The devices of a run and how they train together (one device: no strategy)."""

    backend: str
    devices: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.devices)

    @property
    def strategy(self) -> str | None:
        """The engine's name, or None on one device."""
        return STRATEGIES.get(self.backend) if self.count > 1 else None

    @property
    def learning_rate_factor(self) -> float:
        """√N: what the per-device batch's learning rate is multiplied by."""
        return math.sqrt(self.count)

    def learning_rate(self, rate: float) -> float:
        return rate * self.learning_rate_factor if self.count > 1 else rate

    def record(self, *, global_batch_size: int | None = None, rates: dict | None = None) -> dict:
        """What the provenance records: devices used, engine, batch sizes, learning-rate rule."""
        record = {
            "devices": list(self.devices),
            "strategy": self.strategy,
            "global_batch_size": global_batch_size,
            "per_device_batch_size": (
                None if global_batch_size is None else global_batch_size // self.count
            ),
            "learning_rate_scaling": LEARNING_RATE_SCALING,
            "learning_rate_factor": round(self.learning_rate_factor, 6),
        }
        if rates is not None:
            record["learning_rates"] = rates
        return record

    @contextlib.contextmanager
    def scope(self):
        """Build, compile, fit and predict inside this block to use the devices (on one device,
        a no-op)."""
        if self.count == 1:
            yield
        elif self.backend == "jax":
            import keras

            mesh = keras.distribution.DeviceMesh(
                shape=(self.count,), axis_names=("batch",), devices=list(self.devices)
            )
            with keras.distribution.DataParallel(device_mesh=mesh).scope():
                yield
        else:
            with _mirrored(self.devices).scope():
                yield

    def prepare(self, model) -> None:
        """Make a model to be fitted compute as on one device: on TensorFlow with several
        devices, batch normalisation synchronised over the replicas (`portable` undoes it for a
        save)."""
        if self.count > 1 and self.backend == "tensorflow":
            _set_synchronized(model, True)


# One MirroredStrategy per set of devices and process: each strategy numbers its collective
# operations from the same start, so a second one over the same devices (the next run in the
# process) would meet the first one's operations under the same numbers, of other shapes.
_MIRRORED: dict[tuple[str, ...], object] = {}


def _mirrored(devices: tuple[str, ...]):
    if devices not in _MIRRORED:
        import tensorflow as tf

        _MIRRORED[devices] = tf.distribute.MirroredStrategy([f"/{d}" for d in devices])
    return _MIRRORED[devices]


@contextlib.contextmanager
def portable(model):
    """Save a model inside this block: batch normalisation without ``synchronized`` (a
    TensorFlow-only option that the other backends refuse to load), restored afterwards."""
    layers = _synchronized_layers(model)
    for layer in layers:
        layer.synchronized = False
    try:
        yield
    finally:
        for layer in layers:
            layer.synchronized = True


def _synchronized_layers(model) -> list:
    import keras

    return [
        layer
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.BatchNormalization) and layer.synchronized
    ]


def _set_synchronized(model, value: bool) -> None:
    import keras

    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = value
