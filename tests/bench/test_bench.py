"""The benchmarks measure what they claim and report it (their timings are never asserted)."""

import copy
import json
from pathlib import Path

import keras
import numpy as np
import pytest

from agegender.bench import report, suite, worker
from agegender.bench.timing import PeakMemory, images_per_second, power_law, read_status
from agegender.data.dataset import prepare
from agegender.errors import AgegenderError
from agegender.models.specs import FINE_TUNE, TRAIN, ModelSpec, register, unregister

REPO = Path(__file__).resolve().parents[2]


def test_power_law_recovers_the_exponent_and_refuses_what_it_cannot_fit():
    x = np.array([2000, 6000, 23059])
    fit = power_law(x, 0.004 * x**1.5)
    assert fit["exponent"] == pytest.approx(1.5) and fit["r2"] == pytest.approx(1.0)
    assert fit["coefficient"] == pytest.approx(0.004)
    assert power_law([32**2, 64**2], [3.0, 3.0])["exponent"] == pytest.approx(0.0)
    for bad in (([1, 1], [2, 3]), ([0, 2], [1, 2]), ([1, 2], [1])):
        with pytest.raises(ValueError, match="growth fit"):
            power_law(*bad)


class Batches(keras.utils.PyDataset):
    """`batches` batches of `batch_size` rows; counts how many were served."""

    def __init__(self, batches=50, batch_size=4):
        super().__init__()
        self.batches, self.batch_size = batches, batch_size
        self.served = 0

    def __len__(self):
        return self.batches

    def __getitem__(self, index):
        self.served += 1
        return np.ones((self.batch_size, 3), "float32"), np.zeros((self.batch_size, 1), "float32")


class Timeline:
    """A stand-in for a compiled model in `fit`, on a fake clock: each batch first waits `wait`
    seconds for its input, then trains for `step` seconds, then the callbacks run."""

    def __init__(self, *, wait, step):
        self.wait, self.step, self.now = wait, step, 0.0
        self.batches = 0

    def clock(self):
        return self.now

    def fit(self, batches, *, epochs, verbose, callbacks):
        self.stop_training = False
        for callback in callbacks:
            callback.set_model(self)
        for index in range(len(batches)):
            self.now += self.wait  # the input pipeline serves the batch
            self.now += self.step  # the model trains on it
            self.batches += 1
            for callback in callbacks:
                callback.on_train_batch_end(index, logs={})
            if self.stop_training:
                return


def test_the_clock_counts_the_time_a_model_waits_for_its_input():
    timeline = Timeline(wait=0.75, step=0.25)
    rate = images_per_second(
        timeline, Batches(), min_seconds=0, min_batches=3, clock=timeline.clock
    )
    # After the first (compiling) batch, 3 timed batches of 4 images, each 0.75 s waiting for its
    # input and 0.25 s training: 12 images in 3 s. Timing the steps alone would give 16/s.
    assert timeline.batches == 4
    assert rate == pytest.approx(12 / 3.0)
    # `min_seconds` is read on the same clock: 1 s per batch, so 5 timed batches.
    timeline = Timeline(wait=0.5, step=0.5)
    rate = images_per_second(
        timeline, Batches(), min_seconds=5, min_batches=1, clock=timeline.clock
    )
    assert timeline.batches == 6 and rate == pytest.approx(20 / 5.0)


def tiny_model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    return model


def test_the_clock_stops_training_once_it_has_its_batches():
    batches = Batches(batches=1000)
    images_per_second(tiny_model(), batches, min_seconds=0, min_batches=3)
    # TensorFlow's prefetch may serve a few batches ahead; far fewer than the 1000 on offer
    assert 4 <= batches.served < 50
    with pytest.raises(RuntimeError, match="input ran out after 2 batches"):
        images_per_second(tiny_model(), Batches(batches=2), min_seconds=0, min_batches=3)


def test_peak_memory_sees_an_array_held_inside_the_block(tmp_path):
    if not read_status():
        pytest.skip("no /proc/self/status on this system")
    with PeakMemory() as before:
        pass
    with PeakMemory() as memory:
        held = np.ones(200 * 2**20, dtype=np.uint8)  # 200 MiB, touched; sampled as the block ends
    del held
    assert memory.anon_mib - before.anon_mib > 150
    assert memory.rss_mib >= memory.anon_mib
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmHWM:\t  2048 kB\nRssAnon:\t  1024 kB\nThreads:\t4\n")
    assert read_status(status) == {"VmHWM": 2.0, "RssAnon": 1.0}


def planned(settings):
    return suite.plan_measurements(
        settings, default_jit=lambda backend, model, size: True, default_workers=1
    )


def what(measurements, part):
    return [(m.model, m.stage, m.variant, m.size) for m in measurements if m.part == part]


def test_plans_cover_every_part_and_refuse_unknown_settings():
    # The models as their chapters train them, from the model table.
    assert suite.trained() == [
        ("custom_cnn", 1),
        ("vgg16_features", 1),
        ("resnet50_finetune", 1),
        ("resnet50_finetune", 2),
    ]
    cpu = planned(suite.Settings.for_device("cpu"))
    assert [m.part for m in cpu] == sorted((m.part for m in cpu), key=suite.PARTS.index)
    assert {m.part for m in cpu} == set(suite.PARTS)
    assert what(cpu, "pipeline") == [
        (model, stage, None, size) for size in (64, 128) for model, stage in suite.trained()
    ]
    assert {m.model for m in cpu if m.part == "features"} == {"vgg16_features"}
    variants = [(m.model, m.variant) for m in cpu if m.variant]
    assert variants == [("custom_cnn", "keras_augmentation"), ("custom_cnn", "no_augmentation")]
    assert {m.spec.get("augment") for m in cpu if m.variant} == {"keras", "off"}
    assert {(m.model, m.stage) for m in cpu if m.part == "compile"} == {
        ("custom_cnn", 1),
        ("resnet50_finetune", 1),
        ("resnet50_finetune", 2),
    }
    assert {(m.model, m.stage) for m in cpu if m.part == "backends"} == {
        ("custom_cnn", 1),
        ("resnet50_finetune", 1),
    }
    assert {m.spec["backend"] for m in cpu if m.part == "backends"} == set(suite.BACKENDS)
    assert {m.spec.get("precision", "float32") for m in cpu} == {"float32", "mixed_bfloat16"}
    assert {m.model for m in cpu if m.spec["kind"] == "epoch"} == {"custom_cnn"}
    gpu = planned(suite.Settings.for_device("gpu"))
    assert {m.size for m in gpu if m.part == "pipeline"} == {64, 128, 224}
    (anchor,) = [m for m in gpu if m.variant == suite.ANCHOR]
    assert (anchor.model, anchor.stage, anchor.size) == ("resnet50_finetune", 2, 224)
    assert anchor.spec["precision"] == "mixed_float16" and anchor.spec["jit_compile"] is True
    on_jax = suite.plan_measurements(
        suite.Settings.for_device("gpu", backend="jax"),
        default_jit=lambda backend, model, size: backend == "jax",
        default_workers=1,
    )
    assert {m.spec["backend"] for m in on_jax if m.part != "backends"} == {"jax"}
    assert all(m.spec["jit_compile"] for m in on_jax if m.part == "pipeline")
    only = planned(suite.Settings.for_device("cpu", parts=("scaling", "pipeline")))
    assert list(dict.fromkeys(m.part for m in only)) == ["pipeline", "scaling"]  # in PARTS' order
    with pytest.raises(ValueError, match="parts must be among"):
        suite.Settings.for_device("cpu", parts=("speed",))
    with pytest.raises(ValueError, match="device must be"):
        suite.Settings.for_device("tpu")


def test_the_plan_follows_the_model_table():
    added = [
        ModelSpec("tiny_cnn", "x:y", "a second CNN from scratch"),
        ModelSpec("effnet", "x:y", "a fine-tuned base", base="effnet", stages=(TRAIN, FINE_TUNE)),
    ]
    try:
        for model in added:
            register(model)
        runs = planned(suite.Settings.for_device("gpu"))
    finally:
        for model in added:
            unregister(model.name)
    pipeline = {(model, stage) for model, stage, _, _ in what(runs, "pipeline")}
    assert {("tiny_cnn", 1), ("effnet", 1), ("effnet", 2)} <= pipeline
    assert {("tiny_cnn", 1), ("effnet", 2)} <= {
        (m.model, m.stage) for m in runs if m.part == "compile"
    }
    # tiny_cnn does not augment, so it has no augmentation variants; effnet is no ResNet-50 anchor
    assert {m.model for m in runs if m.variant} == {"custom_cnn", "resnet50_finetune"}
    assert {m.model for m in runs if m.spec["kind"] == "epoch"} == {"custom_cnn", "tiny_cnn"}


def measured(part, figures, *, model, size=64, stage=1, variant=None, kind="train", **spec):
    spec = {"kind": kind, "model": model, "stage": stage, "size": size, **spec}
    return suite.Measurement(part, spec, variant, figures=figures)


def test_derived_figures_compare_within_the_run_on_structured_fields():
    memory = {"peak_anon_mib": 500.0, "peak_rss_mib": 900.0}
    runs = [
        measured(
            "pipeline",
            {"synthetic_images_per_s": 10.0, "real_images_per_s": {"1": 9.0}, **memory},
            model="vgg16_features",
        ),
        measured(
            "features",
            {
                "extraction_images_per_s": 50.0,
                "whole_split_extraction_seconds": 461.2,
                "epoch_images": 3000,
                "head_epoch_seconds": 1.5,
                **memory,
            },
            model="vgg16_features",
            kind="features",
        ),
        measured(
            "backends",
            {
                "backend": "jax",
                "xla": True,
                "synthetic_images_per_s": 50.0,
                "real_images_per_s": {"1": 40.0, "4": 45.0},
                **memory,
            },
            model="custom_cnn",
        ),
        measured(
            "compile",
            {"xla": False, "synthetic_images_per_s": 40.0},
            model="custom_cnn",
            precision="float32",
        ),
        measured(
            "compile",
            {"xla": True, "synthetic_images_per_s": 100.0},
            model="custom_cnn",
            variant="no_augmentation",
            precision="float32",
        ),
        measured(  # no float32 figure without XLA of its own, and not compared with stage 1
            "compile",
            {"xla": True, "synthetic_images_per_s": 30.0},
            model="resnet50_finetune",
            stage=2,
            precision="float32",
        ),
        measured(
            "compile",
            {"xla": False, "synthetic_images_per_s": 60.0},
            model="resnet50_finetune",
            precision="float32",
        ),
    ]
    failed = suite.Measurement("pipeline", {"kind": "train", "model": "custom_cnn", "size": 64})
    failed.error = "the jax backend is missing"
    derived = suite.derive([*runs, failed])
    (pipeline,) = derived["pipeline"]
    assert (pipeline["model_name"], pipeline["stage"], pipeline["variant"]) == (
        "vgg16_features",
        1,
        None,
    )
    assert pipeline["ratio"] == 0.9 and pipeline["real_images_per_s"] == 9.0
    (features,) = derived["features"]
    assert features["end_to_end_epoch_seconds"] == 300.0  # 3000 images at 10 images/s
    assert features["speedup"] == 200.0
    (backend,) = derived["backends"]
    assert backend["ratio_1_workers"] == 0.8 and backend["ratio_4_workers"] == 0.9
    assert [row["relative"] for row in derived["compile"]] == [1.0, 2.5, None, 1.0]
    assert derived["anchor"] is None
    found = report.findings({**derived, "parameters": {"sizes": [64]}})
    assert found["lowest_ratio"] == "0.90" and found["feature_speedup"] == "200 to 200"
    assert found["lowest_ratio_model"] == "vgg16_features, end to end at 64 px"
    assert "xla_cnn" not in found  # no XLA figure for the augmented custom CNN in this run
    assert [report.label(row) for row in derived["compile"]] == [
        "custom_cnn",
        "custom_cnn, no augmentation",
        "resnet50_finetune, stage 2",
        "resnet50_finetune, stage 1",
    ]


def test_the_report_makes_the_display_labels_from_the_fields():
    assert report.training_label("resnet50_finetune", 2, suite.ANCHOR) == (
        "resnet50, every layer trained"
    )
    assert report.training_label("custom_cnn", 1, "keras_augmentation") == (
        "custom_cnn, Keras' RandomRotation and RandomZoom"
    )
    fit = {"time_of": "epoch", "model_name": "custom_cnn", "against": "pixels", "size": None}
    assert report.growth_label({**fit, "images": 2000}) == (
        "custom_cnn epoch vs pixels per image, 2000 images"
    )
    cache = {"time_of": "cache", "model_name": None, "against": "pixels", "size": None}
    assert report.growth_label({**cache, "images": None}) == "data preparation vs pixels per image"


def as_measurements(figures):
    """The Measurements of a results file's records (a format 1 features spec named no model)."""
    return [
        suite.Measurement(
            r["part"],
            {**r["spec"], "model": r["model_name"]} if r["model_name"] else r["spec"],
            r["variant"],
            figures=r["figures"],
            error=r.get("error"),
        )
        for r in figures["measurements"]
    ]


def test_the_committed_results_read_in_the_current_format_with_every_figure_kept():
    path = REPO / "results" / "bench" / "cpu.json"
    raw = json.loads(path.read_text())
    figures = report.load(path.parent)["cpu"]
    assert figures["format"] == suite.RESULTS_FORMAT
    # Deriving again from its measurements, on their fields, gives the tables it holds.
    derived = suite.derive(as_measurements(figures))
    for part in ("anchor", "pipeline", "features", "compile", "backends", "targets"):
        assert derived[part] == figures[part], part
    for table in ("data", "epochs"):
        assert derived["scaling"][table] == figures["scaling"][table]
    fits = {report.growth_label(fit): fit for fit in figures["scaling"]["growth"]}
    for fit in derived["scaling"]["growth"]:
        kept = fits.pop(report.growth_label(fit))
        assert fit == {**kept, "coefficient": pytest.approx(kept["coefficient"], rel=1e-9)}
    assert fits == {}
    if "format" not in raw:  # a format 1 file: its labels are what the report makes now
        for part in report.TRAINING_PARTS:
            assert [report.label(row) for row in figures[part]] == [r["model"] for r in raw[part]]
        assert [report.measurement_label(r) for r in figures["measurements"]] == [
            r["label"] for r in raw["measurements"]
        ]
        growth = [report.growth_label(fit) for fit in figures["scaling"]["growth"]]
        assert growth == list(raw["scaling"]["growth"])
    # What the appendix calls renders.
    shown = report.main_figures(path.parent)
    assert all(row["model"] == report.label(row) for row in shown["pipeline"])
    assert set(report.findings(shown)) >= {"lowest_ratio", "xla_cnn", "xla_resnet_last"}
    for table in (report.pipeline_table, report.compile_table, report.growth_table):
        assert not table(shown).empty
    assert report.failures(shown).empty


def test_a_format_1_row_that_does_not_match_its_measurement_is_refused():
    raw = json.loads((REPO / "results" / "bench" / "cpu.json").read_text())
    if "format" in raw:
        pytest.skip("the committed results are no longer in format 1")
    swapped = copy.deepcopy(raw)
    swapped["pipeline"][0], swapped["pipeline"][1] = raw["pipeline"][1], raw["pipeline"][0]
    with pytest.raises(AgegenderError, match="is not of 'custom_cnn'"):
        report.from_format_1(swapped)
    fewer = {**raw, "compile": raw["compile"][1:]}
    with pytest.raises(AgegenderError, match="compile rows but"):
        report.from_format_1(fewer)


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
    assert figures["format"] == suite.RESULTS_FORMAT
    (features,) = figures["features"]
    assert features["model_name"] == "vgg16_features"
    assert features["head_epoch_seconds"] > 0 and "speedup" not in features  # no pipeline part
    # The training step ran on JAX, with the project's augmentation compiled by XLA.
    assert [(row["backend"], row["model_name"], row["stage"]) for row in figures["backends"]] == [
        ("jax", "custom_cnn", 1),
        ("jax", "resnet50_finetune", 1),
    ]
    assert all(row["xla"] and row["ratio_2_workers"] > 0 for row in figures["backends"])
    assert {row["images"] for row in figures["scaling"]["data"]} == {20, 40}
    growth = [report.growth_label(fit) for fit in figures["scaling"]["growth"]]
    assert "data preparation vs images, 32 px" in growth
    failed = report.failures(figures)
    assert set(failed["why"]) == {"the no_such_backend backend is not installed"}
    assert set(failed["what"]) == {"custom_cnn", "resnet50_finetune, stage 1"}
    text = report.summary(figures)
    assert "VGG16 cached features" in text and "Backends" in text and "Growth" in text
    assert report.load(written.parent) == {"cpu": json.loads(written.read_text())}
