"""`agegender bench`: every throughput figure of the performance appendix, in one run.

Each measurement runs in its own process (`agegender.bench.worker`), so each has its own backend,
dtype policy and memory peak; this module plans them, runs them one after the other and derives
the figures that compare them. Every comparison is made within one run on one machine (ratios
and side-by-side rates), because these machines are too noisy for figures from different runs.

Parts (``--only``); which models each measures comes from the model table
(`agegender.models.specs.MODELS`, see `plan_measurements`):

- ``pipeline``: each model's training images/s on the real cached images next to synthetic
  in-memory batches; their ratio shows whether the input pipeline starves the model.
- ``features``: the heads epoch of a model trained on cached features (VGG16's) against an
  end-to-end epoch, and the one-time cost of extracting the features.
- ``compile``: float32 against mixed precision, and XLA on against off, and the cost
  of the in-model augmentation.
- ``backends``: the same training step on every installed Keras backend, with the loader serving
  batches from the main thread or from worker threads.
- ``scaling``: data preparation and one training epoch against the number of images and the image
  size, with a fitted growth exponent.

Memory: every measurement reports its peak anonymous and resident memory.

Results: each measurement and each derived row names what it measured by structured fields
(``model_name``, ``stage``, ``variant``, ``size``; `Measurement.fields`), never by a display
label; `agegender.bench.report` makes the labels, and reads files of the older format too.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from agegender.bench.timing import power_law
from agegender.bench.worker import RESULT_MARK
from agegender.config import Paths
from agegender.errors import AgegenderError
from agegender.files import file_sha256, write_json_atomic
from agegender.models.specs import MODELS, model_names

PARTS = ("pipeline", "features", "compile", "backends", "scaling")
BACKENDS = ("tensorflow", "jax", "torch")
# The published anchor for ResNet-50 training on one GPU (NVIDIA's Deep Learning Examples, A100
# 80 GB, TensorFlow, mixed precision with XLA, batch 256).
RESNET50_A100_ANCHOR = 2375.0
TARGET_RATIO = 0.85
TARGET_FEATURE_SPEEDUP = 50.0
# The variant that reproduces the anchor's setting (every layer of the ResNet-50 base trained).
ANCHOR = "anchor"
ANCHOR_BASE = "resnet50"
# Variants of a model trained from scratch (changes to its spec): its augmentation as Keras' own
# RandomRotation and RandomZoom (which the project's `RandomAffine` replaced), and none at all.
VARIANTS = {"keras_augmentation": {"augment": "keras"}, "no_augmentation": {"augment": "off"}}
# The results file's format. 1: measurements and rows named only by display labels (such as
# "resnet50_finetune, stage 1"); 2: by structured fields (`Measurement.fields`).
RESULTS_FORMAT = 2


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
    """One planned worker run: what it measures (`spec`, with `variant`), and what it gave.

    Its structured fields (`fields`) are what the derived figures are joined on; the report
    makes the display labels from them (`agegender.bench.report.measurement_label`).
    """

    part: str
    spec: dict
    variant: str | None = None
    figures: dict | None = None
    error: str | None = None

    @property
    def model(self) -> str | None:
        return self.spec.get("model")

    @property
    def stage(self) -> int | None:
        return self.spec.get("stage")

    @property
    def size(self) -> int:
        return self.spec["size"]

    def fields(self) -> dict:
        """What was measured: the model, its stage (1-based), the variant and the image size."""
        return {
            "model_name": self.model,
            "stage": self.stage,
            "variant": self.variant,
            "size": self.size,
        }

    def record(self) -> dict:
        """As written in the results file."""
        record = {"part": self.part, **self.fields(), "spec": self.spec, "figures": self.figures}
        return record | ({"error": self.error} if self.error else {})


# --- the plan ----------------------------------------------------------------------------------


def trained() -> list[tuple[str, int]]:
    """(model, stage) of each stage of each model (`MODELS`), as its chapter trains it; a model
    trained on cached features is measured end to end here."""
    return [(m.name, stage) for m in MODELS.values() for stage in range(1, len(m.stages) + 1)]


def on_images() -> list[tuple[str, int]]:
    """The stages of the models trained on images (not on cached features)."""
    return [(name, stage) for name, stage in trained() if not MODELS[name].on_features]


def from_scratch() -> list[str]:
    """The models trained from scratch (no pretrained base, not on cached features)."""
    return [m.name for m in MODELS.values() if not m.transfer and not m.on_features]


def anchor_model() -> str | None:
    """The model that fine-tunes the anchor's base (ResNet-50), if the table has one."""
    found = [m.name for m in MODELS.values() if m.base == ANCHOR_BASE and m.fine_tunes]
    return found[0] if found else None


@dataclass(frozen=True)
class _Planner:
    """Makes the specs of one run (`plan_measurements`)."""

    settings: Settings
    default_jit: Callable[[str, str, int], bool | str]
    default_workers: int

    def train(self, size: int, model: str, stage: int, **changes) -> dict:
        s = self.settings
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
            "jit_compile": self.default_jit(changes.get("backend", s.backend), model, size),
            "loader_workers": [self.default_workers],
            "backend": s.backend,
            **changes,
        }

    def pipeline(self) -> list[Measurement]:
        return [
            Measurement("pipeline", self.train(size, model, stage))
            for size in self.settings.sizes
            for model, stage in trained()
        ]

    def features(self) -> list[Measurement]:
        s = self.settings
        spec = {
            "kind": "features",
            "batch_size": s.batch_size,
            "images": s.extract_images,
            "epoch_images": s.epoch_images,
            "head_batch_size": 64,
            "backend": s.backend,
        }
        return [
            Measurement("features", {**spec, "model": m.name, "size": size})
            for size in s.sizes
            for m in MODELS.values()
            if m.on_features
        ]

    def compile(self) -> list[Measurement]:
        """XLA at every size; the other precisions at the first size; then the variants."""
        s = self.settings
        settings = [(s.sizes[0], precision) for precision in s.precisions]
        settings += [(larger, "float32") for larger in s.sizes[1:]]
        runs = [
            Measurement(
                "compile",
                self.train(size, model, stage, precision=precision, jit_compile=jit, **_UNLOADED),
            )
            for model, stage in on_images()
            for size, precision in settings
            for jit in (False, True)
        ]
        runs += [
            Measurement("compile", self.train(s.sizes[0], model, 1, **changes, **_UNLOADED), name)
            for name, changes in VARIANTS.items()
            for model in from_scratch()
            if MODELS[model].augments
        ]
        return runs + self.anchor()

    def anchor(self) -> list[Measurement]:
        """On a GPU, the published anchor's setting: every layer trained, 224 px, mixed, XLA."""
        model = anchor_model()
        if self.settings.device != "gpu" or model is None:
            return []
        spec = self.train(
            224,
            model,
            len(MODELS[model].stages),
            fine_tune_blocks=16,  # every block of ResNet-50
            batch_size=256,
            precision="mixed_float16",
            jit_compile=True,
            **_UNLOADED,
        )
        return [Measurement("compile", spec, ANCHOR)]

    def backends(self) -> list[Measurement]:
        s = self.settings
        return [
            Measurement(
                "backends",
                self.train(
                    s.sizes[0], model, 1, backend=backend, loader_workers=list(s.loader_workers)
                ),
            )
            for backend in s.backends
            for model, stage in on_images()
            if stage == 1
        ]

    def scaling(self) -> list[Measurement]:
        s = self.settings
        runs = [
            Measurement(
                "scaling", {"kind": "cache", "size": size, "images": images, "backend": s.backend}
            )
            for size in s.scaling_sizes
            for images in s.scaling_images
        ]
        middle = s.scaling_sizes[len(s.scaling_sizes) // 2]
        epochs = [(middle, images) for images in s.scaling_images]
        epochs += [(size, s.scaling_images[0]) for size in s.scaling_sizes if size != middle]
        runs += [
            Measurement("scaling", {**self.train(size, model, 1, images=images), "kind": "epoch"})
            for model in from_scratch()
            for size, images in epochs
        ]
        return runs


_UNLOADED = {"loader_workers": []}  # synthetic batches only: the loader is not timed


def plan_measurements(
    settings: Settings, *, default_jit, default_workers: int
) -> list[Measurement]:
    """The measurements of a run, in the order they run.

    Which models each part measures comes from the model table (`MODELS`): every stage of every
    model in ``pipeline`` (a model trained on cached features is trained end to end there),
    the models trained on images in ``compile`` (their variants for the models trained from
    scratch that augment) and the first stage of each in ``backends``, the models trained on
    cached features in ``features`` and the models trained from scratch in ``scaling``.

    Args:
        settings: the run's `Settings`.
        default_jit: the training code's XLA default, a function of the backend, the model name
            and the image size.
        default_workers: the loader's default number of threads.
    """
    planner = _Planner(settings, default_jit, default_workers)
    return [m for part in PARTS if part in settings.parts for m in getattr(planner, part)()]


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
    from agegender.bench.report import measurement_label
    from agegender.data.loader import DEFAULT_WORKERS
    from agegender.data.manifest import dataset_fingerprint
    from agegender.training.runtime import default_jit_compile, default_precision

    paths = data.paths
    for size in sorted({*settings.sizes, *settings.scaling_sizes}):
        data.image_cache(size)  # built once, before anything is timed
    output = output or paths.bench_results(settings.device)
    output.parent.mkdir(parents=True, exist_ok=True)
    installed = installed_backends()
    gpu = settings.device == "gpu"

    def default_jit(backend, model, size):
        return default_jit_compile(backend, model, gpu=gpu, image_size=size)

    defaults = {
        "xla": {
            name: {size: default_jit(settings.backend, name, size) for size in settings.sizes}
            for name in model_names()
        },
        "loader_workers": DEFAULT_WORKERS,
        "precision": default_precision(gpu=gpu),
    }
    measurements = plan_measurements(
        settings, default_jit=default_jit, default_workers=defaults["loader_workers"]
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
            "format": RESULTS_FORMAT,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "wall_time_s": round(time.time() - started, 1),
            "device": settings.device,
            "defaults": defaults,
            "complete": complete,
            **derive(measurements),
            "measurements": [m.record() for m in measurements],
        }
        write_json_atomic(output, figures)
        return figures

    with open(output.with_suffix(".log"), "w") as log:
        for number, m in enumerate(measurements, 1):
            backend = m.spec["backend"]
            if backend not in installed:
                m.error = f"the {backend} backend is not installed"
                continue
            what = f"{measurement_label(m.record())}, {m.size} px"
            progress(f"[{number}/{len(measurements)}] {m.part}: {what}, {backend}")
            try:
                m.figures = run_worker(m.spec, paths=paths, log=log)
            except AgegenderError as error:
                m.error = str(error)
                progress(f"  failed: {m.error}")
            write(complete=False)  # an interrupted run keeps what it measured
    return write(complete=True)


# --- derived figures ---------------------------------------------------------------------------


def derive(measurements: list[Measurement]) -> dict:
    """The comparisons of the appendix, from the measurements that succeeded.

    Every row carries the structured fields of what it compares (``model_name``, ``stage``,
    ``variant``, ``size``, ...); rows are joined on those, never on their display labels.
    """
    done = [m for m in measurements if m.figures]

    def part(name):
        return [m for m in done if m.part == name]

    pipeline = [
        {**m.fields(), **_pipeline_rates(m.figures), **_memory(m.figures)} for m in part("pipeline")
    ]
    compiled = _compile_rows(part("compile"))
    return {
        "anchor": _anchor(compiled),
        "pipeline": pipeline,
        "features": [_features_row(m, pipeline) for m in part("features")],
        "compile": compiled,
        "backends": [_backends_row(m) for m in part("backends")],
        "scaling": _scaling(part("scaling")),
        "targets": {"pipeline_ratio": TARGET_RATIO, "feature_speedup": TARGET_FEATURE_SPEEDUP},
    }


def _features_row(m: Measurement, pipeline: list[dict]) -> dict:
    """Extraction and a heads epoch, against an epoch of the same model trained end to end."""
    f = m.figures
    row = {
        "model_name": m.model,
        "size": m.size,
        "extraction_images_per_s": f["extraction_images_per_s"],
        "whole_split_extraction_seconds": f["whole_split_extraction_seconds"],
        "epoch_images": f["epoch_images"],
        "head_epoch_seconds": f["head_epoch_seconds"],
        **_memory(f),
    }
    end_to_end = [
        r["synthetic_images_per_s"]
        for r in pipeline
        if (r["model_name"], r["stage"], r["size"]) == (m.model, 1, m.size)
    ]
    if end_to_end:
        row["end_to_end_epoch_seconds"] = round(f["epoch_images"] / end_to_end[0], 1)
        row["speedup"] = round(row["end_to_end_epoch_seconds"] / f["head_epoch_seconds"], 1)
    return row


def _compile_rows(measurements: list[Measurement]) -> list[dict]:
    """Images/s per precision and XLA setting, relative to float32 without XLA.

    A variant (`VARIANTS`) without a float32 figure without XLA of its own is compared with its
    model as its chapter trains it; the anchor with nothing.
    """
    rows = [
        {
            **m.fields(),
            "precision": m.spec["precision"],
            "xla": m.figures["xla"],
            "images_per_s": m.figures["synthetic_images_per_s"],
        }
        for m in measurements
    ]

    def what(row, variant):
        return (row["model_name"], row["stage"], variant, row["size"])

    baseline = {
        what(row, row["variant"]): row["images_per_s"]
        for row in rows
        if row["precision"] == "float32" and not row["xla"]
    }
    for row in rows:
        chapter = baseline.get(what(row, None)) if row["variant"] in VARIANTS else None
        base = baseline.get(what(row, row["variant"]), chapter)
        row["relative"] = round(row["images_per_s"] / base, 2) if base else None
    return rows


def _anchor(compiled: list[dict]) -> dict | None:
    anchor = next((row for row in compiled if row["variant"] == ANCHOR), None)
    if not anchor:
        return None
    return {
        "images_per_s": anchor["images_per_s"],
        "published_a100_images_per_s": RESNET50_A100_ANCHOR,
        "ratio": round(anchor["images_per_s"] / RESNET50_A100_ANCHOR, 3),
    }


def _backends_row(m: Measurement) -> dict:
    return {
        **m.fields(),
        "backend": m.figures["backend"],
        "xla": m.figures["xla"],
        **_pipeline_rates(m.figures),
        **_memory(m.figures),
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


TIMED = ("images", "seconds", "images_per_s")


def _scaling(measurements: list[Measurement]) -> dict:
    """Data preparation and epochs against images and image size, and their growth fits.

    A growth fit is ``{"time_of": "cache" or "epoch", "model_name", "against": "images" or
    "pixels" (per image), "size" or "images": the one held fixed (None: the largest image count
    of data preparation), "exponent", "coefficient", "r2"}``.
    """
    data = [
        {"size": m.size, **_pick(m.figures, (*TIMED, "cache_mib"))}
        for m in measurements
        if m.spec["kind"] == "cache"
    ]
    epochs = [
        {"model_name": m.model, "size": m.size, **_pick(m.figures, TIMED)}
        for m in measurements
        if m.spec["kind"] == "epoch"
    ]
    return {"data": data, "epochs": epochs, "growth": _cache_growth(data) + _epoch_growth(epochs)}


def _pick(figures: dict, keys: tuple[str, ...]) -> dict:
    return {**{key: figures[key] for key in keys}, **_memory(figures)}


def _cache_growth(data: list[dict]) -> list[dict]:
    """Data preparation against images at each size, and against pixels at the most images."""
    fields = {"time_of": "cache", "model_name": None}
    fits = _growth_at_each(data, "images", "size", **fields)
    largest = max((row["images"] for row in data), default=0)
    rows = [row for row in data if row["images"] == largest]
    return fits + _growth(rows, "pixels", **fields, size=None, images=None)


def _epoch_growth(epochs: list[dict]) -> list[dict]:
    """Each model's epoch against images at each size, and against pixels at each image count."""
    fits = []
    for model in dict.fromkeys(row["model_name"] for row in epochs):
        ran = [row for row in epochs if row["model_name"] == model]
        fields = {"time_of": "epoch", "model_name": model}
        fits += _growth_at_each(ran, "images", "size", **fields)
        fits += _growth_at_each(ran, "pixels", "images", **fields)
    return fits


def _growth_at_each(rows: list[dict], against: str, fixed: str, **fields) -> list[dict]:
    """The fits against `against` among the rows of each value of `fixed` (size or images)."""
    fits = []
    for value in sorted({row[fixed] for row in rows}):
        held = [row for row in rows if row[fixed] == value]
        at = {"size": None, "images": None, fixed: value}
        fits += _growth(held, against, **fields, **at)
    return fits


def _growth(rows: list[dict], against: str, **fields) -> list[dict]:
    """The fit of seconds against images or pixels per image, if the rows have two of them."""
    x = [row["images"] if against == "images" else row["size"] ** 2 for row in rows]
    if len(set(x)) < 2:
        return []
    return [{**fields, "against": against, **power_law(x, [row["seconds"] for row in rows])}]
