"""One measurement in a fresh process: ``python -m agegender.bench.worker '<spec as JSON>'``.

A fresh process per measurement gives each its own Keras backend (chosen by ``KERAS_BACKEND``
before Keras is imported), dtype policy and compiled functions, and a clean memory peak. The
process prints one line, `RESULT_MARK` followed by its figures as JSON, at the end of stdout.

Spec kinds (`measure`):

- ``train``: training images/s of one model on synthetic in-memory batches and on the real
  cached images, with the same compiled model, one after the other.
- ``features``: the one-time feature extraction (images/s) of a model trained on cached features
  (VGG16's) and a heads epoch on those features (seconds).
- ``cache``: decoding the first `images` images of the split into a new image cache.
- ``epoch``: one whole training epoch of a model on `images` training images.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from agegender.bench.timing import PeakMemory, images_per_second

RESULT_MARK = "AGEGENDER-BENCH-RESULT "


def measure(spec: dict) -> dict:
    """Run one measurement (see the module's docstring) and return its figures."""
    from agegender.data.dataset import prepare

    kinds = {"train": _train, "features": _features, "cache": _cache, "epoch": _epoch}
    if spec.get("kind") not in kinds:
        raise ValueError(f"kind must be one of {tuple(kinds)}. Received: {spec.get('kind')!r}")
    data = prepare()
    with PeakMemory() as memory:
        figures = kinds[spec["kind"]](data, spec)
    return {**figures, **memory.to_dict(), **_where()}


def _where() -> dict:
    """The backend and devices this process computed on (Keras is only asked if imported)."""
    from agegender.provenance import backend, devices

    return {"backend": backend(), "devices": devices()}


# --- training throughput -----------------------------------------------------------------------


def build_for_training(spec: dict):
    """The model of a spec, compiled as its chapter trains it.

    ``augment`` is ``"affine"`` (the project's augmentation, the default for the models whose
    chapters augment: `ModelSpec.augments`), ``"keras"`` (Keras' own RandomRotation and
    RandomZoom, which the project's `RandomAffine` replaced, for a before-and-after figure) or
    ``"off"``. A model with a pretrained base starts from random weights (the speed does not
    depend on them). ``stage`` counts the model's stages from 1; its fine-tuning stage unfreezes
    the top `fine_tune_blocks` blocks of the base.
    """
    import keras

    from agegender.models.builders import build
    from agegender.models.finetune import unfreeze_top_blocks
    from agegender.models.layers import Augmentation
    from agegender.models.specs import FINE_TUNE
    from agegender.models.specs import spec as model_spec
    from agegender.training.fit import compile_model

    keras.config.set_dtype_policy(spec.get("precision", "float32"))
    facts = model_spec(spec["model"])
    augment = spec.get("augment", "affine" if facts.augments else "off")
    options = {"weights": None} if facts.transfer else {}
    if augment == "affine":
        options["augmentation"] = Augmentation()
    model = build(spec["model"], image_size=spec["size"], **options)
    if facts.stages[spec.get("stage", 1) - 1] == FINE_TUNE:
        unfreeze_top_blocks(model, spec["fine_tune_blocks"])
    if augment == "keras":
        images = keras.Input(model.input.shape[1:], name="image")
        x = keras.layers.RandomFlip("horizontal")(images)
        x = keras.layers.RandomRotation(0.05)(x)
        x = keras.layers.RandomZoom(0.1)(x)
        x = keras.layers.RandomContrast(0.1, value_range=(0, 255))(x)
        model = keras.Model(images, model(x), name=model.name)
    compile_model(model, learning_rate=1e-4, jit_compile=spec.get("jit_compile", "auto"))
    return model


def synthetic_batches(*, size: int, batch_size: int, batches: int, seed: int = 0):
    """Stand-in for `FaceBatches`: the same random batch, already in memory, `batches` times."""
    import keras

    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (batch_size, size, size, 3)).astype("float32")
    targets = {
        "age": rng.uniform(1, 90, batch_size).astype("float32"),
        "gender": rng.integers(0, 2, batch_size).astype("float32"),
    }

    class Synthetic(keras.utils.PyDataset):
        def __len__(self):
            return batches

        def __getitem__(self, index):
            return images, targets

    synthetic = Synthetic()
    synthetic.batch_size = batch_size
    return synthetic


def _train(data, spec: dict) -> dict:
    model = build_for_training(spec)
    clock = {"min_seconds": spec["min_seconds"], "min_batches": spec["min_batches"]}
    batch_size, size = spec["batch_size"], spec["size"]
    batches = synthetic_batches(size=size, batch_size=batch_size, batches=1000)
    started = time.perf_counter()
    # Settle first (compiling, and on JAX a second trace once the state lives on the device), so
    # that whichever input is timed first is not at a disadvantage.
    images_per_second(model, batches, min_seconds=0, min_batches=2)
    synthetic = images_per_second(model, batches, **clock)
    real = {}
    for workers in spec["loader_workers"]:
        loader = data.batches("train", size=size, batch_size=batch_size, workers=workers)
        if len(loader.rows) < batch_size * (spec["min_batches"] + 2):
            raise ValueError(f"Too few training images for {spec['min_batches']} timed batches.")
        real[str(workers)] = images_per_second(model, loader, **clock)
    return {
        "xla": bool(model.jit_compile),  # what ran: Keras turns XLA off for layers without it
        "synthetic_images_per_s": round(synthetic, 2),
        "real_images_per_s": {workers: round(rate, 2) for workers, rate in real.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }


# --- VGG16 features ----------------------------------------------------------------------------


def _features(data, spec: dict) -> dict:
    from agegender.data.loader import FaceBatches
    from agegender.models.builders import build
    from agegender.models.heads import parts
    from agegender.training.features import extract_features
    from agegender.training.fit import compile_model

    size = spec["size"]
    extractor, heads = parts(build(spec["model"], image_size=size, weights=None))
    in_order = data.batches(
        "train", size=size, batch_size=spec["batch_size"], max_images=spec["images"], shuffle=False
    )
    with tempfile.TemporaryDirectory() as tmp:
        extractor.predict_on_batch(in_order[0][0])  # compiles
        started = time.perf_counter()
        features, _ = extract_features(extractor, in_order, Path(tmp), verbose=0)
        extract_seconds = time.perf_counter() - started
        rows = np.resize(np.arange(len(features)), spec["epoch_images"])
        feature_batches = FaceBatches(
            np.asarray(features),
            rows,
            in_order.ages,
            in_order.genders,
            batch_size=spec["head_batch_size"],
            shuffle=True,
        )
        compile_model(heads, learning_rate=1e-4)
        heads.fit(feature_batches, epochs=1, verbose=0)  # compiles
        started = time.perf_counter()
        heads.fit(feature_batches, epochs=1, verbose=0)
        head_epoch = time.perf_counter() - started
    rate = len(in_order.rows) / extract_seconds
    return {
        "extraction_images_per_s": round(rate, 2),
        "whole_split_extraction_seconds": round(len(data.split) / rate, 1),
        "epoch_images": spec["epoch_images"],
        "head_batch_size": spec["head_batch_size"],
        "head_epoch_seconds": round(head_epoch, 4),
        "feature_bytes_per_image": int(np.prod(features.shape[1:]) * 4),
    }


# --- data preparation --------------------------------------------------------------------------


def _cache(data, spec: dict) -> dict:
    from agegender.data.cache import build_image_cache, open_image_cache

    table = data.split.head(spec["images"]) if spec.get("images") else data.split
    data.paths.data.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".bench-", dir=data.paths.data) as tmp:
        started = time.perf_counter()
        built = build_image_cache(table, data.paths.images, Path(tmp), size=spec["size"])
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        reopened = open_image_cache(built.folder)
        open_seconds = time.perf_counter() - started
        started = time.perf_counter()
        checksum = int(np.asarray(reopened.images).sum(dtype=np.uint64))
        read_seconds = time.perf_counter() - started
    return {
        "images": len(table),
        "seconds": round(seconds, 3),
        "images_per_s": round(len(table) / seconds, 1),
        "cache_mib": round(reopened.images.nbytes / 2**20, 1),
        "reload_open_seconds": round(open_seconds, 4),
        "reload_read_all_seconds": round(read_seconds, 3),
        "pixel_checksum": checksum,
    }


def _epoch(data, spec: dict) -> dict:
    model = build_for_training(spec)
    size, batch_size = spec["size"], spec["batch_size"]
    loader = data.batches("train", size=size, batch_size=batch_size, max_images=spec["images"])
    warm_up = data.batches("train", size=size, batch_size=batch_size, max_images=2 * batch_size)
    model.fit(warm_up, epochs=1, verbose=0)  # compiles, so the epoch below is steady state
    started = time.perf_counter()
    model.fit(loader, epochs=1, verbose=0)
    seconds = time.perf_counter() - started
    return {
        "images": len(loader.rows),
        "seconds": round(seconds, 2),
        "images_per_s": round(len(loader.rows) / seconds, 2),
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m agegender.bench.worker '<spec as JSON>'", file=sys.stderr)
        return 2
    figures = measure(json.loads(argv[0]))
    print(RESULT_MARK + json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
