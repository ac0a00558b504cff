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


def xla_allowed(backend: str) -> bool:
    """False on TensorFlow with op determinism on: Keras then compiles without XLA (not every
    XLA kernel is deterministic), so a run records that it ran without."""
    if backend != "tensorflow":
        return True
    from tensorflow.python.framework.config import is_op_determinism_enabled

    return not is_op_determinism_enabled()


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


def seed_everything(seed: int) -> bool:
    """Seed Python, NumPy and the backend, and ask the backend for deterministic kernels.

    Returns whether deterministic kernels are on: TensorFlow's op determinism, which also turns
    XLA off (`xla_allowed`); JAX's CPU kernels are deterministic as they are; torch's
    `use_deterministic_algorithms` is not forced here, as some of its kernels then refuse to run.
    """
    import keras

    keras.utils.set_random_seed(seed)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
        return True
    return backend == "jax"
