"""Measuring helpers: a training clock, a memory watch and a growth fit. No Keras at import."""

from __future__ import annotations

import resource
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

STATUS = Path("/proc/self/status")


def training_clock(
    *, min_seconds: float, min_batches: int, clock: Callable[[], float] | None = None
):
    """A Keras callback that times training after its first (compiling) batch, then stops it.

    Training stops once at least `min_batches` batches after the first have run and at least
    `min_seconds` have passed since the first ended. The clock reads the step's outputs at the
    first and the last batch, so an asynchronous backend (JAX) has finished them when it reads
    the time; the batches in between run as they would in `fit`, without being waited for.

    Its `rate()` is then images per second over the timed batches, including any time the model
    waited for its input between batches: what a starved model loses is in it. The time is read
    only at the ends of batches, from `clock` (`time.perf_counter` unless a test gives another).
    """
    import keras

    clock = clock or time.perf_counter

    class Clock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.batches = 0  # batches ended, the first included
            self.images = 0  # images of the timed batches
            self.started = self.ended = None
            self.batch_size = None

        def on_train_batch_end(self, batch, logs=None):
            self.batches += 1
            now = clock()
            if self.started is None:
                _wait_for(logs)
                self.started = clock()
                return
            self.images += self.batch_size
            if self.batches - 1 >= min_batches and now - self.started >= min_seconds:
                _wait_for(logs)
                self.ended = clock()
                self.model.stop_training = True

        def rate(self) -> float:
            if self.ended is None:
                raise RuntimeError(
                    f"The input ran out after {self.batches} batches, before the clock stopped "
                    f"({min_batches} timed batches and {min_seconds} s were needed)."
                )
            return self.images / (self.ended - self.started)

    return Clock()


def _wait_for(logs) -> None:
    """Block until the step that produced `logs` has finished (a no-op for eager backends)."""
    for value in (logs or {}).values():
        np.asarray(value)


def images_per_second(
    model,
    batches,
    *,
    min_seconds: float = 8.0,
    min_batches: int = 4,
    clock: Callable[[], float] | None = None,
) -> float:
    """Steady-state training images/s of a compiled model on a `keras.utils.PyDataset`.

    The dataset's batches must all have `batch_size` images until the clock stops (it serves
    more batches than the clock needs). `clock`: see `training_clock`.
    """
    clock = training_clock(min_seconds=min_seconds, min_batches=min_batches, clock=clock)
    clock.batch_size = batches.batch_size
    model.fit(batches, epochs=1, verbose=0, callbacks=[clock])
    return clock.rate()


class PeakMemory:
    """Peak resident memory of this process while a ``with`` block runs, sampled every 50 ms.

    ``anon_mib`` is the peak of anonymous memory (heap, arrays, framework buffers): what a loader
    that held the whole dataset would blow up. ``rss_mib`` is the peak of all resident memory,
    which also counts the pages of memory-mapped files (the image cache) that were read; those
    belong to the page cache and are given back under pressure. ``hwm_mib`` is the kernel's own
    high-water mark of the whole process so far (``VmHWM``), not only of the block.
    """

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.anon_mib = self.rss_mib = self.hwm_mib = 0.0
        self._stop = threading.Event()

    def __enter__(self) -> PeakMemory:
        self._sample()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        status = read_status()
        self.anon_mib = max(self.anon_mib, status.get("RssAnon", 0.0))
        self.rss_mib = max(self.rss_mib, status.get("VmRSS", 0.0))
        self.hwm_mib = max(self.hwm_mib, status.get("VmHWM", peak_rss_mib()))

    def to_dict(self) -> dict:
        return {
            "peak_anon_mib": round(self.anon_mib, 1),
            "peak_rss_mib": round(self.rss_mib, 1),
            "process_hwm_mib": round(self.hwm_mib, 1),
        }


def read_status(path: Path = STATUS) -> dict[str, float]:
    """The memory lines of ``/proc/self/status`` in MiB (empty where there is no /proc)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    found = {}
    for line in lines:
        key, _, value = line.partition(":")
        parts = value.split()
        if len(parts) == 2 and parts[1] == "kB":
            found[key] = int(parts[0]) / 1024
    return found


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def power_law(x, y) -> dict:
    """Fit ``y = a * x**b`` by least squares on logarithms.

    Args:
        x, y: positive numbers, at least two distinct x.

    Returns:
        ``{"exponent": b, "coefficient": a, "r2": ...}``: b = 1 is linear growth, 2 quadratic.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or len(np.unique(x)) < 2 or (x <= 0).any() or (y <= 0).any():
        raise ValueError(
            f"A growth fit needs positive x and y of the same length, with two distinct x. "
            f"Received: x={x.tolist()}, y={y.tolist()}"
        )
    lx, ly = np.log(x), np.log(y)
    slope, intercept = np.polyfit(lx, ly, 1)
    residual = ly - (slope * lx + intercept)
    spread = ((ly - ly.mean()) ** 2).sum()
    r2 = 1.0 - (residual**2).sum() / spread if spread > 0 else 1.0
    return {
        "exponent": round(float(slope), 3),
        "coefficient": float(np.exp(intercept)),
        "r2": round(float(r2), 4),
    }
