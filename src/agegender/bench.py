"""Throughput figures for `agegender bench`. Timings belong here, never in tests."""

from __future__ import annotations

import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL
from PIL import features

from agegender.data.cache import build_image_cache, open_image_cache
from agegender.data.dataset import UTKFace


def bench_data(data: UTKFace, *, size: int = 128) -> dict:
    """Decode throughput of a fresh cache build, and the cost of reloading the built cache.

    The build goes into a temporary folder, so the project's own cache is left alone.
    """
    data.paths.data.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".bench-", dir=data.paths.data) as tmp:
        started = time.perf_counter()
        built = build_image_cache(data.split, data.paths.images, Path(tmp), size=size)
        decode_seconds = time.perf_counter() - started
        build_peak_rss = _peak_rss_mib()

        started = time.perf_counter()
        reopened = open_image_cache(built.folder)
        open_seconds = time.perf_counter() - started
        started = time.perf_counter()
        checksum = int(np.asarray(reopened.images).sum(dtype=np.uint64))
        read_seconds = time.perf_counter() - started
    images = len(data.split)
    return {
        "images": images,
        "size": size,
        "decode_images_per_s": round(images / decode_seconds, 1),
        "decode_seconds": round(decode_seconds, 2),
        "cache_bytes": int(reopened.images.nbytes),
        "build_peak_rss_mib": build_peak_rss,
        "reload_open_seconds": round(open_seconds, 4),
        "reload_read_all_seconds": round(read_seconds, 3),
        "pixel_checksum": checksum,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "pillow": PIL.__version__,
        "libjpeg_turbo": bool(features.check_feature("libjpeg_turbo")),
        "machine": platform.machine(),
    }


def _peak_rss_mib() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def bench_training(
    data: UTKFace,
    *,
    sizes=(64, 128),
    batch_size: int = 32,
    batches: int = 4,
    head_epoch_images: int = 3000,
    head_batch_size: int = 64,
) -> dict:
    """Training images/s of each model, and VGG16's head epoch on cached features vs end to end.

    Every model trains on real cached images with weights=None (the speed does not depend on the
    weights' values). The first batch of each measurement compiles and is left out; the rate is
    over the next `batches` batches.

    The VGG16 comparison is for one epoch of `head_epoch_images` images (the cpu profile's
    training set) in batches of `head_batch_size`, as the chapter trains: the heads' epoch is
    timed on that many cached feature rows (the extracted rows repeated; the timing does not
    depend on their values), the end-to-end epoch is the same images at the measured end-to-end
    rate.
    """
    import keras

    from agegender import models
    from agegender.data.loader import FaceBatches
    from agegender.training import compile_model

    throughput, cached = [], []
    for size in sizes:
        images = batch_size * (batches + 1)
        loader = data.batches("train", size=size, batch_size=batch_size, max_images=images)
        rates = {}
        for label, model in _training_variants(models, size):
            compile_model(model, learning_rate=1e-4)
            rates[label] = _images_per_second(model, loader, epochs=1)
            throughput.append(
                {"model": label, "size": size, "train_images_per_s": round(rates[label], 1)}
            )
            keras.backend.clear_session()

        extractor, heads = models.split(
            models.build("vgg16_features", image_size=size, weights=None)
        )
        in_order = data.batches(
            "train", size=size, batch_size=batch_size, max_images=images, shuffle=False
        )
        with tempfile.TemporaryDirectory() as tmp:
            features, extract_seconds = models.extract_features(
                extractor, in_order, Path(tmp), verbose=0
            )
            rows = np.resize(np.arange(len(features)), head_epoch_images)
            feature_batches = FaceBatches(
                features,
                rows,
                in_order.ages,
                in_order.genders,
                batch_size=head_batch_size,
                shuffle=True,
            )
            compile_model(heads, learning_rate=1e-4)
            head_rate = _images_per_second(heads, feature_batches, epochs=3)
        head_epoch = head_epoch_images / head_rate
        end_to_end_epoch = head_epoch_images / rates["vgg16_features (frozen base, end to end)"]
        cached.append(
            {
                "size": size,
                "epoch_images": head_epoch_images,
                "head_batch_size": head_batch_size,
                "feature_extraction_images_per_s": round(images / extract_seconds, 1),
                "head_epoch_seconds_on_cached_features": round(head_epoch, 4),
                "end_to_end_epoch_seconds": round(end_to_end_epoch, 2),
                "speedup": round(end_to_end_epoch / head_epoch, 1),
            }
        )
        keras.backend.clear_session()
    return {
        "training": throughput,
        "vgg16_cached_features": cached,
        "backend": keras.backend.backend(),
        "batch_size": batch_size,
    }


def _training_variants(models, size: int):
    """(label, model) for each model, built only when its turn comes."""
    yield "custom_cnn", models.build("custom_cnn", image_size=size)
    yield (
        "vgg16_features (frozen base, end to end)",
        models.build("vgg16_features", image_size=size, weights=None),
    )
    resnet = models.build("resnet50_finetune", image_size=size, weights=None)
    yield "resnet50_finetune stage 1 (base frozen)", resnet
    models.unfreeze_top_blocks(resnet, 3)
    yield "resnet50_finetune stage 2 (top 3 blocks)", resnet


def _images_per_second(model, loader, *, epochs: int) -> float:
    """Steady-state training rate: every batch after the very first one."""
    import keras

    class Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds, self.images = [], []

        def on_train_batch_begin(self, batch, logs=None):
            self.started = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.seconds.append(time.perf_counter() - self.started)

    timer = Timer()
    model.fit(loader, epochs=epochs, verbose=0, callbacks=[timer])
    sizes = [
        len(loader.rows) % loader.batch_size or loader.batch_size
        if i == len(loader) - 1
        else loader.batch_size
        for i in range(len(loader))
    ] * epochs
    return sum(sizes[1:]) / sum(timer.seconds[1:])
