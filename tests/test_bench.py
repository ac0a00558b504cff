"""The benchmarks measure what they claim and report it (their timings are never asserted)."""

import json
import time

import keras
import numpy as np
import pytest

from agegender.bench import report, suite, worker
from agegender.bench.timing import PeakMemory, images_per_second, power_law, read_status
from agegender.data.dataset import prepare


def test_power_law_recovers_the_exponent_and_refuses_what_it_cannot_fit():
    x = np.array([2000, 6000, 23059])
    fit = power_law(x, 0.004 * x**1.5)
    assert fit["exponent"] == pytest.approx(1.5) and fit["r2"] == pytest.approx(1.0)
    assert fit["coefficient"] == pytest.approx(0.004)
    assert power_law([32**2, 64**2], [3.0, 3.0])["exponent"] == pytest.approx(0.0)
    for bad in (([1, 1], [2, 3]), ([0, 2], [1, 2]), ([1, 2], [1])):
        with pytest.raises(ValueError, match="growth fit"):
            power_law(*bad)


class SlowBatches(keras.utils.PyDataset):
    """Batches that each take `delay` seconds to serve, as a starving input pipeline would."""

    def __init__(self, delay, batches=50, batch_size=4):
        super().__init__()
        self.delay, self.batches, self.batch_size = delay, batches, batch_size
        self.served = 0

    def __len__(self):
        return self.batches

    def __getitem__(self, index):
        self.served += 1
        time.sleep(self.delay)
        return np.ones((self.batch_size, 3), "float32"), np.zeros((self.batch_size, 1), "float32")


def tiny_model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    return model


def test_the_clock_counts_the_time_a_model_waits_for_its_input():
    # Each batch takes at least 0.05 s to arrive, so no honest rate can exceed 4 / 0.05 = 80/s;
    # a clock that timed only the steps themselves would report thousands.
    rate = images_per_second(tiny_model(), SlowBatches(0.05), min_seconds=0, min_batches=3)
    assert 0 < rate <= 80


def test_the_clock_stops_training_once_it_has_its_batches():
    batches = SlowBatches(0.0, batches=1000)
    images_per_second(tiny_model(), batches, min_seconds=0, min_batches=3)
    # TensorFlow's prefetch may serve a few batches ahead; far fewer than the 1000 on offer
    assert 4 <= batches.served < 50
    with pytest.raises(RuntimeError, match="input ran out after 2 batches"):
        images_per_second(tiny_model(), SlowBatches(0.0, batches=2), min_seconds=0, min_batches=3)


def test_peak_memory_sees_an_array_held_inside_the_block(tmp_path):
    if not read_status():
        pytest.skip("no /proc/self/status on this system")
    with PeakMemory() as before:
        pass
    with PeakMemory() as memory:
        held = np.ones(200 * 2**20, dtype=np.uint8)  # 200 MiB, touched
        time.sleep(0.2)
    del held
    assert memory.anon_mib - before.anon_mib > 150
    assert memory.rss_mib >= memory.anon_mib
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmHWM:\t  2048 kB\nRssAnon:\t  1024 kB\nThreads:\t4\n")
    assert read_status(status) == {"VmHWM": 2.0, "RssAnon": 1.0}


def test_plans_cover_every_part_and_refuse_unknown_settings():
    cpu = suite.plan(
        suite.Settings.for_device("cpu"),
        default_jit=lambda backend, model, size: True,
        default_workers=1,
    )
    parts = {m.part for m in cpu}
    assert parts == set(suite.PARTS)
    pipeline = [(m.label, m.extra["size"]) for m in cpu if m.part == "pipeline"]
    assert pipeline == [(label, size) for size in (64, 128) for label, _, _ in suite.TRAINED]
    assert {m.spec["backend"] for m in cpu if m.part == "backends"} == set(suite.BACKENDS)
    assert {m.spec.get("precision", "float32") for m in cpu} == {"float32", "mixed_bfloat16"}
    gpu = suite.plan(
        suite.Settings.for_device("gpu"),
        default_jit=lambda backend, model, size: True,
        default_workers=1,
    )
    assert {m.extra["size"] for m in gpu if m.part == "pipeline"} == {64, 128, 224}
    (anchor,) = [m for m in gpu if m.label == suite.ANCHOR_LABEL]
    assert anchor.spec["precision"] == "mixed_float16" and anchor.spec["jit_compile"] is True
    on_jax = suite.plan(
        suite.Settings.for_device("gpu", backend="jax"),
        default_jit=lambda backend, model, size: backend == "jax",
        default_workers=1,
    )
    assert {m.spec["backend"] for m in on_jax if m.part != "backends"} == {"jax"}
    assert all(m.spec["jit_compile"] for m in on_jax if m.part == "pipeline")
    only = suite.Settings.for_device("cpu", parts=("scaling",))
    assert {
        m.part
        for m in suite.plan(only, default_jit=lambda backend, model, size: True, default_workers=1)
    } == {"scaling"}
    with pytest.raises(ValueError, match="parts must be among"):
        suite.Settings.for_device("cpu", parts=("speed",))
    with pytest.raises(ValueError, match="device must be"):
        suite.Settings.for_device("tpu")


def measured(part, label, figures, **extra):
    return suite.Measurement(part, label, {"kind": "x"}, figures=figures, extra=extra)


def test_derived_figures_compare_within_the_run():
    memory = {"peak_anon_mib": 500.0, "peak_rss_mib": 900.0}
    vgg = "vgg16_features, end to end"
    runs = [
        measured(
            "pipeline",
            vgg,
            {"synthetic_images_per_s": 10.0, "real_images_per_s": {"1": 9.0}, **memory},
            size=64,
        ),
        measured(
            "features",
            "vgg16_features",
            {
                "extraction_images_per_s": 50.0,
                "whole_split_extraction_seconds": 461.2,
                "epoch_images": 3000,
                "head_epoch_seconds": 1.5,
                **memory,
            },
            size=64,
        ),
        measured(
            "backends",
            "custom_cnn",
            {
                "backend": "jax",
                "xla": True,
                "synthetic_images_per_s": 50.0,
                "real_images_per_s": {"1": 40.0, "4": 45.0},
                **memory,
            },
            size=64,
        ),
        measured(
            "compile",
            "custom_cnn",
            {"xla": False, "synthetic_images_per_s": 40.0},
            size=64,
            precision="float32",
        ),
        measured(
            "compile",
            "custom_cnn, no augmentation",
            {"xla": True, "synthetic_images_per_s": 100.0},
            size=64,
            precision="float32",
        ),
    ]
    runs.append(suite.Measurement("pipeline", "custom_cnn", {}, error="the jax backend is missing"))
    derived = suite.derive(runs)
    (pipeline,) = derived["pipeline"]
    assert pipeline["ratio"] == 0.9 and pipeline["real_images_per_s"] == 9.0
    (features,) = derived["features"]
    assert features["end_to_end_epoch_seconds"] == 300.0  # 3000 images at 10 images/s
    assert features["speedup"] == 200.0
    (backend,) = derived["backends"]
    assert backend["ratio_1_workers"] == 0.8 and backend["ratio_4_workers"] == 0.9
    assert [row["relative"] for row in derived["compile"]] == [1.0, 2.5]
    assert derived["anchor"] is None
    found = report.findings({**derived, "parameters": {"sizes": [64]}})
    assert found["lowest_ratio"] == "0.90" and found["feature_speedup"] == "200 to 200"
    assert "xla_cnn" not in found  # no XLA figure for the augmented custom CNN in this run


def test_a_cache_measurement_decodes_the_first_images_outside_the_project_cache(
    utkface_folder, project
):
    folder, _ = utkface_folder
    data = prepare(project, str(folder))
    figures = worker.measure({"kind": "cache", "size": 16, "images": 40})
    assert figures["images"] == 40 and figures["cache_mib"] == pytest.approx(
        40 * 16 * 16 * 3 / 2**20, abs=0.05
    )
    assert figures["peak_anon_mib"] > 0 and figures["backend"] == "tensorflow"
    assert [p.name for p in data.paths.data.iterdir() if p.name.startswith(".bench")] == []
    with pytest.raises(ValueError, match="kind must be one of"):
        worker.measure({"kind": "speed"})


def test_a_small_run_writes_every_figure_and_records_what_could_not_run(utkface_folder, project):
    folder, _ = utkface_folder
    data = prepare(project, str(folder))
    settings = suite.Settings.for_device(
        "cpu",
        sizes=(32,),
        batch_size=4,
        min_seconds=0.0,
        min_batches=1,
        extract_images=8,
        epoch_images=16,
        scaling_images=(20, 40),
        scaling_sizes=(32,),
        backends=("jax", "no_such_backend"),
        loader_workers=(1, 2),
        parts=("features", "backends", "scaling"),
    )
    lines = []
    figures = suite.run(settings, data, progress=lines.append)
    written = data.paths.results / "bench" / "cpu.json"
    assert json.loads(written.read_text()) == json.loads(json.dumps(figures))
    assert figures["profile"] == "bench-cpu" and figures["split_sha256"] and figures["complete"]
    (features,) = figures["features"]
    assert features["head_epoch_seconds"] > 0 and "speedup" not in features  # no pipeline part
    # The training step ran on JAX, with the project's augmentation compiled by XLA.
    assert [(row["backend"], row["model"]) for row in figures["backends"]] == [
        ("jax", "custom_cnn"),
        ("jax", "resnet50_finetune, stage 1"),
    ]
    assert all(row["xla"] and row["ratio_2_workers"] > 0 for row in figures["backends"])
    assert {row["images"] for row in figures["scaling"]["data"]} == {20, 40}
    assert "data preparation vs images, 32 px" in figures["scaling"]["growth"]
    failed = report.failures(figures)
    assert set(failed["why"]) == {"the no_such_backend backend is not installed"}
    text = report.summary(figures)
    assert "VGG16 cached features" in text and "Backends" in text and "Growth" in text
    assert report.load(written.parent) == {"cpu": json.loads(written.read_text())}
