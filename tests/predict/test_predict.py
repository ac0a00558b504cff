"""Age and gender of faces in new photos: agegender.predict and `agegender predict`."""

from __future__ import annotations

import json
import os
import time
from io import StringIO

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from agegender import cli, predict
from agegender.config import Paths
from agegender.errors import AgegenderError
from agegender.faces import detect, synthetic

needs_dlib = pytest.mark.skipif(
    detect.available() is not None, reason="dlib is not installed (the predict extra)"
)

ORIENTATION = 0x0112


@pytest.fixture
def predictor(tiny_model_file, red_squares):
    return predict.Predictor(tiny_model_file, detector=red_squares)


@pytest.fixture
def photos(tmp_path, squares_photo):
    """A folder with a photo of two faces, one of none, a text file named .jpg and a truncated
    JPEG."""
    folder = tmp_path / "photos"
    folder.mkdir()
    squares_photo(squares=((20, 30, 40), (120, 40, 90))).save(folder / "two.jpg", quality=95)
    squares_photo(squares=()).save(folder / "none.png")
    (folder / "text.jpg").write_text("not a photo")
    squares_photo(size=(400, 300)).save(folder / "whole.jpg", quality=95)
    (folder / "cut.jpg").write_bytes((folder / "whole.jpg").read_bytes()[:600])
    (folder / "whole.jpg").unlink()
    (folder / "notes.txt").write_text("not in the search")
    return folder


def rows_by_file(table):
    return {os.path.basename(f): rows for f, rows in table.groupby("file")}


def test_every_face_gets_a_row_and_every_other_photo_says_why_not(photos, predictor):
    table = predict.predict(photos, predictor)
    assert list(table.columns) == predict.COLUMNS
    by_file = rows_by_file(table)
    assert sorted(by_file) == ["cut.jpg", "none.png", "text.jpg", "two.jpg"]
    two = by_file["two.jpg"]
    assert list(two["face"]) == [0, 1]  # largest first
    assert [tuple(b) for b in two["box"]] == [(120, 40, 90, 90), (20, 30, 40, 40)]
    assert set(two["gender"]) <= {"female", "male"}
    assert two["female_probability"].between(0, 1).all() and (two["age"] > 0).all()
    assert (two["problem"] == "").all()
    assert by_file["none.png"]["problem"].item() == predict.NO_FACE
    assert "not an image" in by_file["text.jpg"]["problem"].item()
    assert "truncated" in by_file["cut.jpg"]["problem"].item()
    for name in ("none.png", "text.jpg", "cut.jpg"):
        assert by_file[name]["face"].isna().all() and by_file[name]["age"].isna().all()
    assert table.attrs["photos"] == 4 and table.attrs["model"] == str(predictor.model_file)
    assert predict.photos_read(table) == 2


def test_a_missing_path_or_an_empty_folder_is_a_row_too(tmp_path, predictor):
    (tmp_path / "empty").mkdir()
    table = predict.predict([tmp_path / "missing.jpg", tmp_path / "empty"], predictor)
    assert list(table["problem"]) == [
        "no such file or folder",
        f"a folder without images ({', '.join(predict.IMAGE_SUFFIXES)})",
    ]
    assert predict.photos_read(table) == 0


def test_the_exif_orientation_is_honoured_and_boxes_are_in_the_upright_photo(
    tmp_path, squares_photo, predictor
):
    stored = squares_photo(size=(240, 160), squares=((20, 30, 60),))
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # shown turned 90 degrees clockwise
    stored.save(tmp_path / "turned.jpg", exif=exif, quality=95)
    photo = predict.open_photo(tmp_path / "turned.jpg")
    assert photo.image.size == (160, 240)
    (box,) = predict.predict(tmp_path / "turned.jpg", predictor)["box"]
    # (x, y) of the stored image -> (height - y - side, x) of the upright one
    assert box == pytest.approx((160 - 30 - 60, 20, 60, 60), abs=2)


@pytest.mark.parametrize("mode", ["L", "CMYK", "P", "RGBA", "I;16", "LA"])
def test_any_colour_mode_becomes_rgb(tmp_path, squares_photo, predictor, mode):
    image = squares_photo()
    if mode == "I;16":
        image = Image.fromarray(np.asarray(image.convert("L"), np.uint16) * 257)
    else:
        image = image.convert(mode)
    path = tmp_path / ("photo.jpg" if mode == "CMYK" else "photo.png")
    image.save(path)
    photo = predict.open_photo(path)
    assert photo.image.mode == "RGB" and photo.image.size == (240, 160)
    table = predict.predict(path, predictor)
    expected = 0 if mode in ("L", "LA", "I;16") else 1  # no red in greyscale
    assert len(predict.faces_of(table)) == expected


def test_a_greyscale_jpeg_is_read_as_grey_rgb(tmp_path, squares_photo):
    squares_photo().convert("L").save(tmp_path / "grey.jpg")
    photo = predict.open_photo(tmp_path / "grey.jpg")
    pixels = np.asarray(photo.image)
    assert pixels.shape == (160, 240, 3) and (pixels[..., 0] == pixels[..., 2]).all()


def test_huge_photos_are_decoded_smaller_and_boxes_mapped_back(
    tmp_path, squares_photo, predictor, monkeypatch
):
    monkeypatch.setattr(predict, "DECODE_SIDE", 256)
    photo = squares_photo(size=(2400, 1200), squares=((1200, 300, 600),))
    photo.save(tmp_path / "huge.jpg", quality=80)  # decoded at 1/2 (JPEG draft), then shrunk
    photo.save(tmp_path / "huge.png")  # shrunk only
    for name in ("huge.jpg", "huge.png"):
        decoded = predict.open_photo(tmp_path / name)
        assert max(decoded.image.size) <= 2 * 256
        assert decoded.scale == pytest.approx(2400 / decoded.image.width)
        (box,) = predict.predict(tmp_path / name, predictor)["box"]
        assert box == pytest.approx((1200, 300, 600, 600), abs=12)


def test_annotated_photos_are_written(photos, predictor, tmp_path):
    out = tmp_path / "annotated"
    predict.predict(photos, predictor, annotate=out)
    written = sorted(p.name for p in out.iterdir())
    assert written == ["none.png", "two.jpg"]
    with Image.open(out / "two.jpg") as image, Image.open(photos / "two.jpg") as original:
        assert image.size == original.size
        assert np.abs(np.asarray(image, float) - np.asarray(original, float)).mean() > 1


def test_the_model_is_found_from_its_results_folder_or_the_latest_run(tmp_path, tiny_model_file):
    paths = Paths(root=tmp_path, data=tmp_path / "data")
    with pytest.raises(AgegenderError, match="No trained model"):
        predict.default_model(paths)
    for run, names in (("old", ["best.keras"]), ("new", ["best.keras", "model.keras"])):
        work = paths.run_work("cpu", run)
        work.mkdir(parents=True)
        for name in names:
            (work / name).write_bytes(tiny_model_file.read_bytes())
        results = paths.run_results("cpu", run)
        results.mkdir(parents=True)
        (results / "predictions.csv").write_text("file\n")
        (results / "provenance.json").write_text(json.dumps({"profile": "cpu"}))
        time.sleep(0.01)
    untested = paths.run_work("cpu", "untested")  # newest, but no results: not a candidate
    untested.mkdir(parents=True)
    (untested / "best.keras").write_bytes(tiny_model_file.read_bytes())
    assert predict.default_model(paths) == paths.run_work("cpu", "new") / "model.keras"
    old_results = paths.run_results("cpu", "old") / "predictions.csv"
    os.utime(old_results, (time.time() + 120,) * 2)
    os.utime(paths.run_work("cpu", "old") / "best.keras", (time.time() + 60,) * 2)
    assert predict.default_model(paths) == paths.run_work("cpu", "old") / "best.keras"
    # a model newer than its results is of a run still training: a finished one comes first
    os.utime(paths.run_work("cpu", "old") / "best.keras", (time.time() + 180,) * 2)
    assert predict.default_model(paths) == paths.run_work("cpu", "new") / "model.keras"
    assert predict.model_path(paths.run_results("cpu", "old"), paths) == (
        paths.run_work("cpu", "old") / "best.keras"
    )
    assert predict.model_path(tiny_model_file, paths) == tiny_model_file


def test_a_model_that_takes_features_is_refused_with_a_hint(tmp_path, red_squares):
    import keras

    features = keras.Input((2, 2, 512))
    pooled = keras.layers.Flatten()(features)
    outputs = {name: keras.layers.Dense(1, name=name)(pooled) for name in ("age", "gender")}
    path = tmp_path / "best.keras"
    keras.Model(features, outputs).save(path)
    with pytest.raises(AgegenderError, match=r"model\.keras"):
        predict.Predictor(path, detector=red_squares)


def test_a_dex_model_gives_an_age_interval(tmp_path, squares_photo, red_squares):
    from agegender.models.builders import build

    model = build("custom_cnn", image_size=16, width=4, depth=2, age_head="dex")
    squares_photo().save(tmp_path / "photo.png")
    table = predict.predict(tmp_path / "photo.png", model, detector=red_squares)
    assert list(table.columns[4:6]) == ["age_low", "age_high"]
    assert (table["age_low"] <= table["age_high"]).all()
    assert "age " in predict.format_rows(table) and "-" in predict.format_rows(table)
    plain = predict.predict(tmp_path / "photo.png", predictor_model(), detector=red_squares)
    assert "age_low" not in plain.columns


def predictor_model():
    import keras

    images = keras.Input((16, 16, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(images)
    outputs = {name: keras.layers.Dense(1, name=name)(pooled) for name in ("age", "gender")}
    return keras.Model(images, outputs)


def test_an_age_distribution_gives_an_interval():
    bins = np.zeros((2, 101))
    bins[0, 30] = 1.0
    bins[1, 20:41] = 1 / 21
    low, high = predict._interval(bins)
    assert list(low) == [30, 22] and list(high) == [30, 38]


def test_json_and_csv_say_the_same(photos, predictor):
    table = predict.predict(photos, predictor)
    as_json = predict.as_json(table)
    assert as_json["model"] == str(predictor.model_file) and as_json["photos"] == 4
    assert [face["box"] for face in as_json["faces"]] == [[120, 40, 90, 90], [20, 30, 40, 40]]
    assert {p["problem"] for p in as_json["problems"]} >= {predict.NO_FACE}
    json.dumps(as_json)  # JSON-ready
    csv = pd.read_csv(StringIO(predict.as_csv(table)))
    assert list(csv.columns[:6]) == ["file", "face", "x", "y", "w", "h"]
    assert len(csv) == len(table) and csv["face"].notna().sum() == 2
    assert csv.loc[csv["face"] == 1, ["x", "y", "w", "h"]].values.tolist() == [[20, 30, 40, 40]]


@pytest.fixture
def cli_with_squares(monkeypatch, red_squares):
    """`agegender predict` with the red-square detector."""
    monkeypatch.setattr(detect, "FaceDetector", lambda: red_squares)


def test_the_command_prints_faces_and_exits_0_when_any_photo_was_read(
    photos, tiny_model_file, cli_with_squares, capsys, tmp_path
):
    out = tmp_path / "annotated"
    code = cli.main(
        ["predict", str(photos), "--model", str(tiny_model_file), "--annotate", str(out)]
    )
    printed = capsys.readouterr()
    assert code == 0
    assert "two.jpg: face 0 at x=120 y=40 w=90 h=90: age" in printed.out
    assert "none.png: no face found" in printed.out and "not an image" in printed.out
    assert str(tiny_model_file) in printed.err and "4 photo(s), 2 face(s)" in printed.err
    assert (out / "two.jpg").is_file()


def test_the_command_writes_json_and_csv(photos, tiny_model_file, cli_with_squares, capsys):
    assert cli.main(["predict", str(photos), "--model", str(tiny_model_file), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == str(tiny_model_file) and len(result["faces"]) == 2
    assert (
        cli.main(["predict", str(photos / "two.jpg"), "--model", str(tiny_model_file), "--csv"])
        == 0
    )
    csv = pd.read_csv(StringIO(capsys.readouterr().out))
    assert len(csv) == 2 and set(csv["gender"]) <= {"female", "male"}


@needs_dlib
def test_the_command_exits_1_when_nothing_could_be_read(photos, tiny_model_file, capsys):
    code = cli.main(
        [
            "predict",
            str(photos / "text.jpg"),
            str(photos / "cut.jpg"),
            "--model",
            str(tiny_model_file),
        ]
    )
    printed = capsys.readouterr()
    assert code == 1 and "not an image" in printed.out and "truncated" in printed.out


def test_the_command_exits_2_without_a_model(photos, tmp_path, capsys):
    code = cli.main(["predict", str(photos), "--model", str(tmp_path / "missing.keras")])
    assert code == 2 and "No trained model" in capsys.readouterr().err


@needs_dlib
def test_photos_without_faces_with_the_real_detector(photos, tiny_model_file):
    table = predict.predict(photos / "none.png", tiny_model_file)
    assert table["problem"].tolist() == [predict.NO_FACE]


@needs_dlib
@pytest.mark.real_data
def test_several_real_faces_in_one_photo_are_all_found(real_faces, tmp_path, tiny_model_file):
    files, _ = real_faces
    crops = [Image.open(file).convert("RGB") for file in files[:4]]
    canvas = synthetic.compose_many(crops, np.random.default_rng(0))
    canvas.image.save(tmp_path / "group.jpg", quality=95)
    table = predict.predict(tmp_path / "group.jpg", tiny_model_file)
    faces = predict.faces_of(table)
    assert len(faces) >= 3
    truths = canvas.face_boxes()
    assert all(any(synthetic.is_of(box, truth) for truth in truths) for box in faces["box"])
