"""The chapter "Using a trained model" (agegender.using): its run is measured once, written with
provenance, reused, read back without Keras or dlib, kept out of the peers and baselines, and
every state without numbers says why. Faces are red squares found by a fake detector, the model
a tiny one saved as a run's best.keras."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from support import make_utkface

from agegender import plots, predict, runner, using
from agegender.data.dataset import prepare
from agegender.data.labels import age_band
from agegender.errors import AgegenderError
from agegender.faces import align, synthetic
from agegender.results import store

RED = (230, 20, 20)  # what the red_squares detector finds (tests/predict/conftest.py)
PROFILE = "mine"
MODEL = "custom_cnn"


class Counting:
    """A detector that counts the images it is asked about."""

    def __init__(self, detector):
        self.detector, self.calls = detector, 0

    def __call__(self, image):
        self.calls += 1
        return self.detector(image)


def paint_faces(folder):
    """Paint a red square where UTKFace's crops have their face box on every readable image."""
    for path in sorted(folder.iterdir()):
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
        except OSError:
            continue
        side = round(align.BOX_SIDE * image.width)
        x, y = (round(c * image.width - side / 2) for c in align.BOX_CENTRE)
        image.paste(RED, (x, y, x + side, y + side))
        image.save(path, format="JPEG", quality=95)


@pytest.fixture
def data(tmp_path, project, tiny_model_file):
    """A prepared fixture UTKFace whose images hold a red square each, and a trained model of
    `MODEL` under `PROFILE` (its results folder's provenance names it, as a chapter writes it)."""
    source = tmp_path / "source" / "UTKFace"
    make_utkface(source)
    paint_faces(source)
    prepared = prepare(project, str(source))
    results = project.run_results(PROFILE, MODEL)
    results.mkdir(parents=True)
    (results / "provenance.json").write_text(json.dumps({"model_file": "best.keras"}))
    work = project.run_work(PROFILE, MODEL)
    work.mkdir(parents=True)
    shutil.copy(tiny_model_file, work / "best.keras")
    return prepared


def measure(data, detector, **changes):
    settings = {"profile": PROFILE, "model": MODEL, "faces": 8, "group_faces": 4, "seed": 0}
    return using.measure(data, **{**settings, **changes}, detector=detector)


def test_the_run_is_written_with_provenance_and_reused_while_nothing_changes(data, red_squares):
    detector = Counting(red_squares)
    folder = measure(data, detector)
    assert folder == data.paths.run_results(PROFILE, using.NAME)
    run = using.load(folder)
    found = run.predictions["found"]
    assert len(found) == 8 and found[::2].all()  # at least every face on noise (`canvases`)
    assert not run.predictions["file"].str.contains("/").any()  # names, not this machine's paths
    assert run.metrics["found"] == found.mean() and run.metrics["faces"] == 8
    assert [row["margin"] for row in run.metrics["margins"]] == list(synthetic.MARGINS)
    group = run.metrics["group_photo"]
    assert len(group["files"]) == 4 and None not in group["matched"]
    record = run.provenance
    assert record["crop_geometry"]["model_sha256"] and record["fingerprint"]
    assert record["parameters"]["faces"] == 8 and record["split_sha256"]
    asked = detector.calls  # the group photo, and each face's photo once (not once per use)
    assert asked == 1 + 8
    written = (folder / "provenance.json").read_bytes()

    measure(data, detector)
    assert detector.calls == asked  # reused: nothing measured again
    assert (folder / "provenance.json").read_bytes() == written

    measure(data, detector, faces=6)  # other settings: measured again
    assert detector.calls > asked and len(using.load(folder).predictions) == 6

    model = data.paths.run_work(PROFILE, MODEL) / "best.keras"
    model.write_bytes(model.read_bytes() + b"\0")  # another model file: measured again
    asked = detector.calls
    measure(data, detector, faces=6)
    assert detector.calls > asked


def test_the_run_is_neither_a_peer_nor_a_baseline(data, red_squares):
    measure(data, red_squares)
    assert store.load_peers(PROFILE, data.paths) == {}
    assert store.load_baselines(PROFILE, data.paths) == {}


def test_a_run_whose_files_were_changed_is_refused(data, red_squares):
    folder = measure(data, red_squares)
    metrics = folder / "metrics.json"
    metrics.write_text(metrics.read_text().replace('"faces": 8', '"faces": 9'))
    with pytest.raises(AgegenderError, match="do not belong"):
        using.load(folder)


def test_the_chapters_text_comes_from_the_run(data, red_squares):
    run, reason = using.chapter_run(
        data, profile=PROFILE, model=MODEL, faces=8, group_faces=4, seed=0, detector=red_squares
    )
    assert reason == ""
    values = using.chapter_values(run, reason, profile=PROFILE, model=MODEL, paths=data.paths)
    assert values["notice"] == ""
    found = int(run.predictions["found"].sum())
    assert f"found {found} of the 8 faces" in values["geometry_sentence"]
    assert f"{run.metrics['age_mae_recovered']:.2f} years" in values["geometry_sentence"]
    assert "found 4 of the 4 faces" in values["group_sentence"]
    assert f"data/work/{PROFILE}/{MODEL}/best.keras" in values["model_where"]
    assert "Provenance" in values["provenance_card"]
    margins = using.margin_table(run)
    best = margins.loc[margins["age_mae"].idxmin()]
    assert f"{best['age_mae']:.2f} years" in values["margin_caption"]
    assert list(using.group_table(run).data["true age"]) == group_ages(run)
    group = run.metrics["group_photo"]
    image = using.annotated_group_photo(data.paths, run)  # drawn again, from the run alone
    photo = using.group_canvas(data.paths.images, group["files"], seed=0).image
    assert image.size == photo.size and image.tobytes() != photo.tobytes()


def group_ages(run):
    return run.metrics["group_photo"]["age"]


def test_no_trained_model_says_so_and_shows_no_numbers(data, red_squares):
    shutil.rmtree(data.paths.run_work(PROFILE, MODEL))
    run, reason = using.chapter_run(
        data, profile=PROFILE, model=MODEL, faces=8, group_faces=4, seed=0, detector=red_squares
    )
    assert run is None and f"No `{MODEL}` model has been trained" in reason
    values = using.chapter_values(run, reason, profile=PROFILE, model=MODEL, paths=data.paths)
    assert values["notice"].startswith(":::{warning}")
    assert "Nothing was measured" in values["notice"]
    assert "No `custom_cnn` model has been trained" in values["model_where"]
    assert "not measured" in using.group_table(run).lower()
    assert using.margin_table(run) is None
    for figure in (
        plots.group_photo(using.annotated_group_photo(data.paths, run), "none"),
        plots.crop_comparison(None, "none"),
        plots.margin_curve(None, None, "none"),
    ):
        assert len(figure.axes) == 1 and figure.axes[0].texts  # a sentence, not a plot


def test_an_earlier_run_is_shown_when_this_machine_cannot_measure(data, red_squares):
    measure(data, red_squares)
    shutil.rmtree(data.paths.run_work(PROFILE, MODEL))
    run, reason = using.chapter_run(
        data, profile=PROFILE, model=MODEL, faces=8, group_faces=4, seed=0, detector=red_squares
    )
    assert run is not None and reason
    notice = using.notice(run, reason, PROFILE)
    assert notice.startswith(":::{note}") and "an earlier run recorded" in notice


def test_no_face_found_says_so_and_still_gives_every_figure_and_table(data):
    run, reason = using.chapter_run(
        data, profile=PROFILE, model=MODEL, faces=8, group_faces=4, seed=0, detector=lambda i: []
    )
    assert reason == "" and run.metrics["found"] == 0
    values = using.chapter_values(run, reason, profile=PROFILE, model=MODEL, paths=data.paths)
    assert "found none of the faces" in values["notice"]
    assert "none of the 8 faces" in values["geometry_sentence"]
    assert "none of the 4 faces" in values["group_sentence"]
    assert "no face" in values["summary_sentence"].lower()
    assert using.margin_table(run) is None and "No face" in using.margin_view(run)
    assert set(using.group_table(run).data["predicted age"]) == {"not found"}
    assert plots.crop_comparison(run.predictions).axes[0].texts


def test_group_faces_are_spread_over_the_age_bands(data):
    rows = using.group_rows(data.split, 5, seed=0)
    split = data.split.iloc[rows]
    assert (split["split"] == "test").all() and len(rows) == len(set(rows))
    bands = [age_band(int(age)) for age in split["age"]]
    present = {age_band(int(a)) for a in data.split.loc[data.split["split"] == "test", "age"]}
    first = min(len(present), len(rows))
    assert len(set(bands[:first])) == first  # one of each band present before any second
    assert list(rows) == list(using.group_rows(data.split, 5, seed=0))  # the same every time


def test_the_chapters_values_are_checked_before_it_runs():
    for override, message in (
        ({"geometry_faces": 0}, "geometry_faces must be a positive integer"),
        ({"group_faces": -1}, "group_faces must be a positive integer"),
        ({"model": "custom"}, "model must be one of"),
    ):
        with pytest.raises(AgegenderError, match=message):
            runner.plan("smoke", only=["08_using_a_model"], overrides=override)


def test_a_greyscale_model_gets_luma_through_the_one_conversion(tmp_path, red_squares):
    import keras

    images = keras.Input((16, 16, 1), name="image")
    mean = keras.layers.GlobalAveragePooling2D()(images)
    age = keras.layers.Dense(1, name="age", kernel_initializer="ones")(mean)
    gender = keras.layers.Dense(1, activation="sigmoid", name="gender")(mean)
    model = keras.Model(images, {"age": age, "gender": gender})
    photo = Image.new("RGB", (200, 120), (90, 140, 90))
    photo.paste(RED, (40, 20, 120, 100))
    photo.save(tmp_path / "photo.png")
    table = predict.predict(tmp_path / "photo.png", model, detector=red_squares)
    face = red_squares(np.asarray(photo))[0]
    crop = align.crop_face(photo, face).image
    grey = align.model_input(crop, 16, channels=1)
    assert grey.shape == (16, 16, 1)
    np.testing.assert_array_equal(grey[..., 0], np.round(align.model_input(crop, 16) @ align.LUMA))
    assert table["age"].iloc[0] == pytest.approx(grey.mean(), abs=0.1)  # age: the mean brightness
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        align.model_input(crop, 16, channels=2)
