"""Keras batches from the image cache; works on every Keras backend (a `keras.utils.PyDataset`)."""

from __future__ import annotations

import math

import keras
import numpy as np

# Batches are read in the main thread, while the backend computes the step before (TensorFlow's
# prefetch, JAX's asynchronous dispatch); `agegender bench` measured worker threads slower on a
# 2-core CPU, where they take cores from the model.
DEFAULT_WORKERS = 1


class FaceBatches(keras.utils.PyDataset):
    """Batches of ``(images, {"age": ..., "gender": ...})`` read from an image array.

    Each batch reads only its own rows from `images` (typically the cache's memmap), so the whole
    set is never loaded into memory. Without shuffling, batches follow `rows` in order and the last
    batch keeps whatever is left (nothing is dropped), which is what validation and test need.

    For training on several devices (`multiple_of` > 1, the number of devices), every batch holds
    a multiple of `multiple_of` images, so that it splits evenly over the devices (Keras'
    `DataParallel` on JAX refuses a batch that does not): a shuffling loader leaves out the last
    few images of an epoch's order (fewer than `multiple_of`, different ones each epoch), and an
    unshuffled one (validation, test, feature extraction) pads its last batch with copies of its
    last image. Its batches are then ``(images, labels, sample_weights)``: 0 for a copy, and for
    every own image (all images served, padding included) / (own images), the one weight with
    which the losses and metrics that Keras averages over an epoch are those of the own images
    alone, exactly. `real_size` says how many images of a batch are its own.

    Args:
        images: uint8 array (N, size, size, channels), e.g. `ImageCache.images`.
        rows: the indices into `images` (and the label arrays) that this loader serves.
        ages: age label of every row of `images`.
        genders: gender label (0 male, 1 female) of every row of `images`.
        files: file name of every row of `images`; kept for predictions tables.
        batch_size: images per batch.
        shuffle: reshuffle `rows` at the start and after every epoch.
        seed: seed of the shuffling; epoch `e` uses ``(seed, e)``.
        dtype: dtype of the image batches (pixel values stay 0-255).
        multiple_of: every batch holds a multiple of this many images (the devices it is split
            over); `batch_size` must be a multiple of it.
        **kwargs: `workers`, `use_multiprocessing`, `max_queue_size` for `keras.utils.PyDataset`.
    """

    def __init__(
        self,
        images,
        rows,
        ages,
        genders,
        files=None,
        *,
        batch_size: int = 64,
        shuffle: bool = False,
        seed: int = 0,
        dtype: str = "float32",
        multiple_of: int = 1,
        **kwargs,
    ):
        super().__init__(**{"workers": DEFAULT_WORKERS, **kwargs})
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer. Received: {batch_size=}")
        if not isinstance(multiple_of, int) or multiple_of < 1 or batch_size % multiple_of:
            raise ValueError(
                "multiple_of must be a positive integer that divides batch_size. "
                f"Received: {multiple_of=}, {batch_size=}"
            )
        rows = np.asarray(rows, dtype=np.int64)
        if rows.ndim != 1 or (rows.size and (rows.min() < 0 or rows.max() >= len(images))):
            raise ValueError(f"rows must index the {len(images)} images.")
        if not len(images) == len(ages) == len(genders):
            raise ValueError(
                "images, ages and genders must have the same length. Received: "
                f"{len(images)}, {len(ages)}, {len(genders)}"
            )
        self.images = images
        self.rows = rows
        self.all_ages = np.asarray(ages, dtype=np.float32)
        self.all_genders = np.asarray(genders, dtype=np.float32)
        self.all_files = None if files is None else np.asarray(files)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.dtype = dtype
        self.multiple_of = multiple_of
        self.epoch = 0
        self._order = self._ordered_rows()

    def _ordered_rows(self) -> np.ndarray:
        if not self.shuffle:
            return self.rows
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.rows)

    def __len__(self) -> int:
        if self.shuffle and self.multiple_of > 1:  # a last batch of fewer images is left out
            return math.ceil((len(self.rows) - len(self.rows) % self.multiple_of) / self.batch_size)
        return math.ceil(len(self.rows) / self.batch_size)

    def real_size(self, index: int) -> int:
        """How many of batch `index`'s images are the loader's own (the rest is padding)."""
        size = min(self.batch_size, len(self.rows) - index * self.batch_size)
        return size - size % self.multiple_of if self.shuffle else size

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        start = index * self.batch_size
        rows = self._order[start : start + self.real_size(index)]
        if self.shuffle:
            rows = np.sort(rows)  # the same batch, read from the memmap in file order
        real = len(rows)
        if self.multiple_of > 1 and not self.shuffle:
            padded = -(-real // self.multiple_of) * self.multiple_of
            rows = np.concatenate([rows, np.repeat(rows[-1:], padded - real)])
        images = np.asarray(self.images[rows], dtype=self.dtype)
        labels = {"age": self.all_ages[rows], "gender": self.all_genders[rows]}
        if self.multiple_of == 1 or self.shuffle:
            return images, labels
        weights = np.zeros(len(rows), dtype=np.float32)
        weights[:real] = self._served / len(self.rows)
        return images, labels, {"age": weights, "gender": weights}

    @property
    def _served(self) -> int:
        """Images served per epoch by an unshuffled loader, its padding included."""
        last = self.real_size(len(self) - 1)
        return len(self.rows) - last + -(-last // self.multiple_of) * self.multiple_of

    def split_over(self, devices: int) -> FaceBatches:
        """This loader for `devices` devices (`multiple_of`): itself when it is one already, else
        a copy serving the same rows in the same order.

        Raises:
            ValueError: a batch size that is not a multiple of `devices`.
        """
        if devices == self.multiple_of:
            return self
        copy = self.variant(multiple_of=devices)
        copy.set_epoch(self.epoch)
        return copy

    def variant(self, **changes) -> FaceBatches:
        """A new loader over the same images, rows and labels, with this one's options except
        `changes` (``shuffle``, ``batch_size``, ``multiple_of``, ...)."""
        options = {
            "batch_size": self.batch_size,
            "shuffle": self.shuffle,
            "seed": self.seed,
            "dtype": self.dtype,
            "multiple_of": self.multiple_of,
            "workers": self.workers,
            "use_multiprocessing": self.use_multiprocessing,
            "max_queue_size": self.max_queue_size,
        }
        return FaceBatches(
            self.images,
            self.rows,
            self.all_ages,
            self.all_genders,
            self.all_files,
            **{**options, **changes},
        )

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self.set_epoch(self.epoch + 1)

    def set_epoch(self, epoch: int) -> None:
        """Serve the order of epoch `epoch` (0-based), e.g. when an interrupted run resumes."""
        self.epoch = epoch
        self._order = self._ordered_rows()

    @property
    def ages(self) -> np.ndarray:
        """Age labels in the loader's unshuffled order."""
        return self.all_ages[self.rows]

    @property
    def genders(self) -> np.ndarray:
        return self.all_genders[self.rows]

    @property
    def files(self) -> np.ndarray | None:
        return None if self.all_files is None else self.all_files[self.rows]
