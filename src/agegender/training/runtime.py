"""Runtime defaults measured by `agegender bench`: XLA, precision, and the dtype policy in force.

Keras-free at import: the bench reads these to record the defaults in force.
"""

from __future__ import annotations

import contextlib

from agegender.models.specs import spec


def default_jit_compile(backend: str, model: str, *, gpu: bool, image_size: int) -> bool | str:
    """Whether to compile a model's training step with XLA, when the config does not say.

    Always on JAX (an uncompiled JAX step is many times slower) and on TensorFlow on a GPU; on
    TensorFlow on a CPU from the image size its spec gives (`ModelSpec.cpu_xla_from_size`, as
    measured); Keras' choice (off) on torch.
    """
    if backend == "jax" or (backend == "tensorflow" and gpu):
        return True
    if backend == "tensorflow":
        smallest = spec(model).cpu_xla_from_size
        return smallest is not None and image_size >= smallest
    return "auto"


def default_precision(*, gpu: bool) -> str:
    """``mixed_float16`` on a GPU; ``float32`` on a CPU, where `agegender bench` measured
    ``mixed_bfloat16`` several times slower (a CPU without bfloat16 arithmetic emulates it)."""
    return "mixed_float16" if gpu else "float32"


@contextlib.contextmanager
def dtype_policy(name: str):
    """Use a global Keras dtype policy (e.g. ``"mixed_float16"``) inside a ``with`` block."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
