"""Features of a frozen extractor, computed once per images and weights and cached on disk."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import keras
import numpy as np
from keras import ops

from agegender.data.loader import FaceBatches
from agegender.files import write_json_atomic


def features_key(extractor: keras.Model, loader) -> str:
    """A sha256 naming what `extract_features` computes: the extractor's weights and input shape,
    and the loader's images (its rows and file names, or the pixels when it has no names)."""
    digest = hashlib.sha256(b"agegender-features-v1")
    digest.update(repr(tuple(extractor.input.shape[1:])).encode())
    for variable in extractor.weights:
        if "seed_generator" not in variable.path:  # augmentation state: changes, irrelevant
            digest.update(variable.path.encode())
            digest.update(np.ascontiguousarray(ops.convert_to_numpy(variable)).tobytes())
    digest.update(repr(loader.images.shape[1:]).encode())
    digest.update(np.asarray(loader.rows, dtype=np.int64).tobytes())
    if loader.files is not None:
        digest.update("\n".join(map(str, loader.files)).encode())
    else:
        digest.update(np.ascontiguousarray(loader.images[np.sort(loader.rows)]).tobytes())
    return digest.hexdigest()


def extract_features(
    extractor: keras.Model, loader, cache_dir, *, verbose: int = 1
) -> tuple[np.ndarray, float]:
    """The extractor's features for every image of a loader, computed once and cached on disk.

    The cache file is named by `features_key`, so a different split, subset, image size or set of
    weights gets its own file; it is written under a temporary name and renamed when complete. The
    seconds the extraction took are kept beside it (``.json``), so a run that reuses the cache
    still reports what the features cost.

    Args:
        extractor: a feature extractor, e.g. ``parts(model)[0]``.
        loader: a `FaceBatches`; its batches are read in its unshuffled row order.
        cache_dir: folder of the cached ``.npy`` files.
        verbose: show a progress bar when computing.

    Returns:
        A read-only memory-mapped float32 array (N, *feature_shape), in the loader's row order,
        and the seconds its extraction took (None for a cache made before they were recorded).
    """
    cache_dir = Path(cache_dir)
    path = cache_dir / f"features-{features_key(extractor, loader)[:24]}.npy"
    record = path.with_suffix(".json")
    if path.is_file():
        seconds = json.loads(record.read_text())["seconds"] if record.is_file() else None
        return np.load(path, mmap_mode="r"), seconds
    if getattr(loader, "shuffle", False):
        raise ValueError("Features must be extracted in row order. Received a shuffled loader.")
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npy")
    shape = (len(loader.rows), *extractor.output.shape[1:])
    features = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
    progress = keras.utils.Progbar(len(loader), verbose=verbose, unit_name="batch")
    started, start = time.perf_counter(), 0
    split = getattr(loader, "multiple_of", 1) > 1
    for index in range(len(loader)):
        images = loader[index][0]
        batch = _predict_batch(extractor, images, split=split)
        if split:
            batch = batch[: loader.real_size(index)]  # less the padding of a split batch
        features[start : start + len(batch)] = batch
        start += len(batch)
        progress.update(index + 1)
    features.flush()
    del features
    seconds = round(time.perf_counter() - started, 3)
    write_json_atomic(record, {"seconds": seconds, "images": shape[0]})
    os.replace(tmp, path)
    return np.load(path, mmap_mode="r"), seconds


def _predict_batch(extractor: keras.Model, images: np.ndarray, *, split: bool) -> np.ndarray:
    """The extractor's output for one batch; a batch `split` over several devices goes through
    `predict`, which splits it (`predict_on_batch` would give each TensorFlow replica the whole
    batch and return as many copies)."""
    if split:
        return np.asarray(extractor.predict(images, batch_size=len(images), verbose=0))
    return np.asarray(extractor.predict_on_batch(images))


def feature_batches(extractor, loader, cache_dir: Path, *, train: bool, seed: int, verbose: int):
    """A loader of the extractor's cached features for the images of `loader`, and the seconds
    their extraction took (`extract_features`); training batches shuffle as `loader` does."""
    in_order = loader.variant(shuffle=False, dtype="float32")
    features, seconds = extract_features(extractor, in_order, cache_dir, verbose=verbose)
    # The same loader class serves the cached features: row i of `features` is image i.
    batches = FaceBatches(
        features,
        np.arange(len(features)),
        loader.ages,
        loader.genders,
        loader.files,
        batch_size=loader.batch_size,
        shuffle=train and loader.shuffle,
        seed=seed,
        multiple_of=loader.multiple_of,
    )
    return batches, seconds
