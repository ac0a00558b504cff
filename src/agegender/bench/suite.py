"""`agegender bench`: every throughput figure of the performance appendix, in one run.

Each measurement runs in its own process (`agegender.bench.worker`), so each has its own backend,
dtype policy and memory peak; this module plans them, runs them one after the other and derives
the figures that compare them. Every comparison is made within one run on one machine (ratios
and side-by-side rates), because these machines are too noisy for figures from different runs.

Parts (``--only``):

- ``pipeline``: each model's training images/s on the real cached images next to synthetic
  in-memory batches; their ratio shows whether the input pipeline starves the model.
- ``features``: VGG16's heads epoch on cached features against an end-to-end epoch, and the
  one-time cost of extracting the features.
- ``compile``: float32 against mixed precision, and XLA on against off, and the cost
  of the in-model augmentation.
- ``backends``: the same training step on every installed Keras backend, with the loader serving
  batches from the main thread or from worker threads.
- ``scaling``: data preparation and one training epoch against the number of images and the image
  size, with a fitted growth exponent.

Memory: every measurement reports its peak anonymous and resident memory.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from agegender.bench.timing import power_law
from agegender.bench.worker import RESULT_MARK
from agegender.config import Paths
from agegender.errors import AgegenderError
from agegender.files import file_sha256, write_json_atomic

PARTS = ("pipeline", "features", "compile", "backends", "scaling")
BACKENDS = ("tensorflow", "jax", "torch")
# The published anchor for ResNet-50 training on one GPU (NVIDIA's Deep Learning Examples, A100
# 80 GB, TensorFlow, mixed precision with XLA, batch 256).
RESNET50_A100_ANCHOR = 2375.0
ANCHOR_LABEL = "resnet50, every layer trained"
TARGET_RATIO = 0.85
TARGET_FEATURE_SPEEDUP = 50.0


@dataclass(frozen=True)
class Settings:
    """How big a bench run is; `for_device` gives the defaults of a CPU or a GPU machine.

    Attributes:
        device: ``"cpu"`` or ``"gpu"``: which plan, and the name of the results file.
        backend: the Keras backend of every part but ``backends`` (e.g. ``"jax"`` where there is
            no TensorFlow).
        sizes: image sides of the pipeline and features parts.
        batch_size: training batch of the throughput measurements.
        min_seconds, min_batches: each rate is timed over at least this long and this many batches.
        fine_tune_blocks: ResNet-50 blocks unfrozen in stage 2 (as the profile trains it).
        epoch_images: images of one VGG16 heads epoch (the profile's training set).
        extract_images: images whose features are extracted for the extraction rate.
        scaling_images: image counts of the scaling part (None: the whole split or training set).
        scaling_sizes: image sides of the scaling part.
        precisions: Keras dtype policies compared in the compile part.
        backends: Keras backends compared (the installed ones among them are run).
        loader_workers: loader threads compared in the backends part (1: the main thread).
    """

    device: str = "cpu"
    backend: str = "tensorflow"
    sizes: tuple[int, ...] = (64, 128)
    batch_size: int = 64
    min_seconds: float = 8.0
    min_batches: int = 4
    fine_tune_blocks: int = 3
    epoch_images: int = 3000
    extract_images: int = 256
    scaling_images: tuple[int | None, ...] = (2000, 6000, None)
    scaling_sizes: tuple[int, ...] = (32, 64, 128)
    precisions: tuple[str, ...] = ("float32", "mixed_bfloat16")
    backends: tuple[str, ...] = BACKENDS
    loader_workers: tuple[int, ...] = (1, 4)
    parts: tuple[str, ...] = PARTS

    @classmethod
    def for_device(cls, device: str, **changes) -> Settings:
        if device not in ("cpu", "gpu"):
            raise ValueError(f"device must be 'cpu' or 'gpu'. Received: device={device!r}")
        if device == "gpu":
            gpu = {
                "sizes": (64, 128, 224),
                "batch_size": 128,
                "min_seconds": 10.0,
                "min_batches": 20,
                "fine_tune_blocks": 6,
                "epoch_images": 16146,
                "extract_images": 4096,
                "scaling_sizes": (64, 128, 224),
                "precisions": ("float32", "mixed_float16", "mixed_bfloat16"),
            }
            changes = {**gpu, **changes}
        unknown = sorted(set(changes.get("parts", ())) - set(PARTS))
        if unknown:
            raise ValueError(f"parts must be among {PARTS}. Received: {unknown}")
        return cls(device=device, **changes)


# A run in minutes that exercises every part (`agegender bench --quick`); its figures are rough.
QUICK = {
    "sizes": (64,),
    "batch_size": 32,
    "min_seconds": 2.0,
    "min_batches": 2,
    "extract_images": 64,
    "epoch_images": 600,
    "scaling_images": (500, 1000),
    "scaling_sizes": (32, 64),
}


@dataclass
class Measurement:
    """One planned worker run: what it measures (`spec`), its labels, and what it gave."""

    part: str
    label: str
    spec: dict
    figures: dict | None = None
    error: str | None = None
    extra: dict = field(default_factory=dict)


# --- the plan ----------------------------------------------------------------------------------

TRAINED = (  # (label, model, stage): the models as their chapters train them
    ("custom_cnn", "custom_cnn", 1),
    ("vgg16_features, end to end", "vgg16_features", 1),
    ("resnet50_finetune, stage 1", "resnet50_finetune", 1),
    ("resnet50_finetune, stage 2", "resnet50_finetune", 2),
)


AUGMENTATION_LABELS = {  # the custom CNN before `RandomAffine`, and without augmentation
    "keras": "custom_cnn, Keras' RandomRotation and RandomZoom",
    "off": "custom_cnn, no augmentation",
}


def plan(settings: Settings, *, default_jit, default_workers: int) -> list[Measurement]:
    """The measurements of a run, in the order they run.

    Args:
        settings: the run's `Settings`.
        default_jit: the training code's XLA default, a function of the backend, the model name
            and the image size.
        default_workers: the loader's default number of threads.
    """
    s = settings

    def train(size, model, stage, **spec):
        return {
            "kind": "train",
            "model": model,
            "stage": stage,
            "size": size,
            "batch_size": s.batch_size,
            "fine_tune_blocks": s.fine_tune_blocks,
            "min_seconds": s.min_seconds,
            "min_batches": s.min_batches,
            "precision": "float32",
            "jit_compile": default_jit(spec.get("backend", s.backend), model, size),
            "loader_workers": [default_workers],
            **spec,
        }

    runs = []
    if "pipeline" in s.parts:
        for size in s.sizes:
            for label, model, stage in TRAINED:
                spec = train(size, model, stage, backend=s.backend)
                runs.append(Measurement("pipeline", label, spec, extra={"size": size}))
    if "features" in s.parts:
        for size in s.sizes:
            spec = {
                "kind": "features",
                "size": size,
                "batch_size": s.batch_size,
                "images": s.extract_images,
                "epoch_images": s.epoch_images,
                "head_batch_size": 64,
                "backend": s.backend,
            }
            runs.append(Measurement("features", "vgg16_features", spec, extra={"size": size}))
    if "compile" in s.parts:  # XLA at every size; the other precisions at the first size
        size = s.sizes[0]
        settings = [(size, precision) for precision in s.precisions]
        settings += [(larger, "float32") for larger in s.sizes[1:]]
        for label, model, stage in (TRAINED[0], TRAINED[2], TRAINED[3]):
            for size, precision in settings:
                for jit in (False, True):
                    spec = train(
                        size,
                        model,
                        stage,
                        backend=s.backend,
                        precision=precision,
                        jit_compile=jit,
                        loader_workers=[],
                    )
                    extra = {"size": size, "precision": precision, "xla": jit}
                    runs.append(Measurement("compile", label, spec, extra=extra))
        size = s.sizes[0]
        for augment, label in AUGMENTATION_LABELS.items():
            spec = train(
                size, "custom_cnn", 1, backend=s.backend, augment=augment, loader_workers=[]
            )
            extra = {"size": size, "precision": "float32", "xla": spec["jit_compile"]}
            runs.append(Measurement("compile", label, spec, extra=extra))
        if s.device == "gpu":  # the published anchor: every layer trained, 224 px, mixed, XLA
            spec = train(
                224,
                "resnet50_finetune",
                2,
                backend=s.backend,
                fine_tune_blocks=16,
                batch_size=256,
                precision="mixed_float16",
                jit_compile=True,
                loader_workers=[],
            )
            extra = {"size": 224, "precision": "mixed_float16", "xla": True}
            runs.append(Measurement("compile", ANCHOR_LABEL, spec, extra=extra))
    if "backends" in s.parts:
        size = s.sizes[0]
        for backend in s.backends:
            for label, model, stage in (TRAINED[0], TRAINED[2]):
                spec = train(
                    size,
                    model,
                    stage,
                    backend=backend,
                    loader_workers=list(s.loader_workers),
                )
                runs.append(Measurement("backends", label, spec, extra={"size": size}))
    if "scaling" in s.parts:
        for size in s.scaling_sizes:
            for images in s.scaling_images:
                spec = {"kind": "cache", "size": size, "images": images, "backend": s.backend}
                runs.append(Measurement("scaling", "data preparation", spec, extra={"size": size}))
        middle = s.scaling_sizes[len(s.scaling_sizes) // 2]
        epochs = [(middle, images) for images in s.scaling_images]
        epochs += [(size, s.scaling_images[0]) for size in s.scaling_sizes if size != middle]
        for size, images in epochs:
            spec = train(size, "custom_cnn", 1, backend=s.backend, images=images)
            spec["kind"] = "epoch"
            runs.append(Measurement("scaling", "custom_cnn epoch", spec, extra={"size": size}))
    return runs


# --- running -----------------------------------------------------------------------------------


def installed_backends(candidates=BACKENDS) -> list[str]:
    return [name for name in candidates if importlib.util.find_spec(name) is not None]


def run_worker(spec: dict, *, paths: Paths, log, timeout: float = 1800) -> dict:
    """Run one measurement in a new process with its backend; its figures, or AgegenderError."""
    env = {
        **os.environ,
        "KERAS_BACKEND": spec["backend"],
        "AGEGENDER_ROOT": str(paths.root),
        "AGEGENDER_DATA_DIR": str(paths.data),
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
    }
    command = [sys.executable, "-m", "agegender.bench.worker", json.dumps(spec)]
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise AgegenderError(f"The measurement ran over {timeout:.0f} s: {spec}") from error
    log.write(f"== {json.dumps(spec)}\n{done.stderr}{done.stdout}\n")
    log.flush()
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if done.returncode or not lines:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise AgegenderError(f"exit {done.returncode}: {tail}")
    return json.loads(lines[-1][len(RESULT_MARK) :])


def run(settings: Settings, data, *, output: Path | None = None, progress=print) -> dict:
    """Run every planned measurement and write the figures to ``results/bench/<device>.json``.

    The file is rewritten after each measurement (``"complete": false`` until the last), so an
    interrupted run keeps what it measured.

    A measurement that fails (an uninstalled backend, a model that does not fit) is recorded
    with its error and the run goes on; a figure that needs it is then left out. The workers'
    output goes to a log beside the results file (``<device>.log``, not committed).

    Args:
        settings: the run's `Settings`.
        data: the prepared `UTKFace` (`agegender.data.dataset.prepare`).
        output: the results file (default ``results/bench/<device>.json``).
        progress: called with a line before each measurement.

    Returns:
        The figures, as written.
    """
    from agegender import provenance
    from agegender.data.loader import DEFAULT_WORKERS
    from agegender.data.manifest import dataset_fingerprint
    from agegender.models import MODEL_NAMES
    from agegender.training import default_jit_compile, default_precision

    paths = data.paths
    for size in sorted({*settings.sizes, *settings.scaling_sizes}):
        data.image_cache(size)  # built once, before anything is timed
    output = output or paths.results / "bench" / f"{settings.device}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    installed = installed_backends()
    gpu = settings.device == "gpu"
    defaults = {
        "xla": {
            name: {
                size: default_jit_compile(settings.backend, name, gpu=gpu, image_size=size)
                for size in settings.sizes
            }
            for name in MODEL_NAMES
        },
        "loader_workers": DEFAULT_WORKERS,
        "precision": default_precision(gpu=gpu),
    }
    measurements = plan(
        settings,
        default_jit=lambda backend, model, size: default_jit_compile(
            backend, model, gpu=gpu, image_size=size
        ),
        default_workers=defaults["loader_workers"],
    )
    started = time.time()
    # What ran is the code as it was when the run started (the git state is read now, once).
    record = provenance.collect(
        profile=f"bench-{settings.device}",
        parameters=asdict(settings),
        started=started,
        dataset_sha256=dataset_fingerprint(data.manifest),
        split_sha256=file_sha256(paths.split_file),
        weights="random initialisation (the speed does not depend on the weights' values)",
    )

    def write(complete: bool) -> dict:
        figures = {
            **record,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "wall_time_s": round(time.time() - started, 1),
            "device": settings.device,
            "defaults": defaults,
            "complete": complete,
            **derive(measurements),
            "measurements": [
                {"part": m.part, "label": m.label, **m.extra, "spec": m.spec, "figures": m.figures}
                | ({"error": m.error} if m.error else {})
                for m in measurements
            ],
        }
        write_json_atomic(output, figures)
        return figures

    with open(output.with_suffix(".log"), "w") as log:
        for number, m in enumerate(measurements, 1):
            backend = m.spec["backend"]
            if backend not in installed:
                m.error = f"the {backend} backend is not installed"
                continue
            progress(f"[{number}/{len(measurements)}] {m.part}: {m.label} {m.extra}")
            try:
                m.figures = run_worker(m.spec, paths=paths, log=log)
            except AgegenderError as error:
                m.error = str(error)
                progress(f"  failed: {m.error}")
            write(complete=False)  # an interrupted run keeps what it measured
    return write(complete=True)


# --- derived figures ---------------------------------------------------------------------------


def derive(measurements: list[Measurement]) -> dict:
    """The comparisons of the appendix, from the measurements that succeeded."""
    done = [m for m in measurements if m.figures]

    def part(name):
        return [m for m in done if m.part == name]

    pipeline = [
        {
            "model": m.label,
            "size": m.extra["size"],
            **_pipeline_rates(m.figures),
            **_memory(m.figures),
        }
        for m in part("pipeline")
    ]
    end_to_end = {
        row["size"]: row["synthetic_images_per_s"]
        for row in pipeline
        if row["model"] == "vgg16_features, end to end"
    }
    features = []
    for m in part("features"):
        f, size = m.figures, m.extra["size"]
        row = {
            "size": size,
            "extraction_images_per_s": f["extraction_images_per_s"],
            "whole_split_extraction_seconds": f["whole_split_extraction_seconds"],
            "epoch_images": f["epoch_images"],
            "head_epoch_seconds": f["head_epoch_seconds"],
            **_memory(f),
        }
        if size in end_to_end:
            row["end_to_end_epoch_seconds"] = round(f["epoch_images"] / end_to_end[size], 1)
            row["speedup"] = round(row["end_to_end_epoch_seconds"] / f["head_epoch_seconds"], 1)
        features.append(row)
    compiled = [
        {
            "model": m.label,
            "size": m.extra["size"],
            "precision": m.extra["precision"],
            "xla": m.figures["xla"],
            "images_per_s": m.figures["synthetic_images_per_s"],
        }
        for m in part("compile")
    ]
    baseline = {  # float32 without XLA, per model and size; the custom CNN variants compare too
        (row["model"], row["size"]): row["images_per_s"]
        for row in compiled
        if row["precision"] == "float32" and not row["xla"]
    }
    for row in compiled:
        base = baseline.get((row["model"].split(",")[0], row["size"]))
        base = baseline.get((row["model"], row["size"]), base)
        row["relative"] = round(row["images_per_s"] / base, 2) if base else None
    backends = [
        {
            "model": m.label,
            "size": m.extra["size"],
            "backend": m.figures["backend"],
            "xla": m.figures["xla"],
            **_pipeline_rates(m.figures),
            **_memory(m.figures),
        }
        for m in part("backends")
    ]
    anchor = next((r for r in compiled if r["model"] == ANCHOR_LABEL), None)
    if anchor:
        anchor = {
            "images_per_s": anchor["images_per_s"],
            "published_a100_images_per_s": RESNET50_A100_ANCHOR,
            "ratio": round(anchor["images_per_s"] / RESNET50_A100_ANCHOR, 3),
        }
    return {
        "anchor": anchor,
        "pipeline": pipeline,
        "features": features,
        "compile": compiled,
        "backends": backends,
        "scaling": _scaling(part("scaling")),
        "targets": {"pipeline_ratio": TARGET_RATIO, "feature_speedup": TARGET_FEATURE_SPEEDUP},
    }


def _pipeline_rates(figures: dict) -> dict:
    """Synthetic and real images/s, and real / synthetic, per loader worker count."""
    synthetic = figures["synthetic_images_per_s"]
    real = figures["real_images_per_s"]
    row = {"synthetic_images_per_s": synthetic}
    for workers, rate in real.items():
        suffix = "" if len(real) == 1 else f"_{workers}_workers"
        row[f"real_images_per_s{suffix}"] = rate
        row[f"ratio{suffix}"] = round(rate / synthetic, 3)
    return row


def _memory(figures: dict) -> dict:
    return {key: figures[key] for key in ("peak_anon_mib", "peak_rss_mib")}


def _scaling(measurements: list[Measurement]) -> dict:
    def rows(kind: str, keys: tuple[str, ...]) -> list[dict]:
        return [
            {"size": m.extra["size"], **{key: m.figures[key] for key in keys}, **_memory(m.figures)}
            for m in measurements
            if m.spec["kind"] == kind
        ]

    timed = ("images", "seconds", "images_per_s")
    data, epochs = rows("cache", (*timed, "cache_mib")), rows("epoch", timed)
    growth = {}
    for size in sorted({row["size"] for row in data}):
        rows = [row for row in data if row["size"] == size]
        if len({row["images"] for row in rows}) > 1:
            growth[f"data preparation vs images, {size} px"] = power_law(
                [r["images"] for r in rows], [r["seconds"] for r in rows]
            )
    largest = max((row["images"] for row in data), default=0)
    rows = [row for row in data if row["images"] == largest]
    if len({row["size"] for row in rows}) > 1:
        growth["data preparation vs pixels per image"] = power_law(
            [r["size"] ** 2 for r in rows], [r["seconds"] for r in rows]
        )
    for axis, key, fixed in (("images", "images", "size"), ("pixels per image", "size", "images")):
        for value in sorted({row[fixed] for row in epochs}):
            rows = [row for row in epochs if row[fixed] == value]
            if len({row[key] for row in rows}) > 1:
                x = [r[key] ** 2 if key == "size" else r[key] for r in rows]
                label = (
                    f"custom_cnn epoch vs {axis}, {value}{' px' if fixed == 'size' else ' images'}"
                )
                growth[label] = power_law(x, [r["seconds"] for r in rows])
    return {"data": data, "epochs": epochs, "growth": growth}
