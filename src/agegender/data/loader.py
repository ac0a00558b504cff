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
        **kwargs,
    ):
        super().__init__(**{"workers": DEFAULT_WORKERS, **kwargs})
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer. Received: {batch_size=}")
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
        self.epoch = 0
        self._order = self._ordered_rows()

    def _ordered_rows(self) -> np.ndarray:
        if not self.shuffle:
            return self.rows
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.rows)

    def __len__(self) -> int:
        return math.ceil(len(self.rows) / self.batch_size)

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        rows = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        if self.shuffle:
            rows = np.sort(rows)  # the same batch, read from the memmap in file order
        images = np.asarray(self.images[rows], dtype=self.dtype)
        return images, {"age": self.all_ages[rows], "gender": self.all_genders[rows]}

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
