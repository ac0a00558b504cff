"""Finding faces and cutting them out as UTKFace's crops were cut (agegender.faces)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from agegender.data.cache import load_image
from agegender.faces import align, detect, synthetic
from agegender.faces.align import LANDMARKS, UTKFACE_SIZE, crop_face, model_input, similarity
from agegender.faces.detect import Face, FaceDetector, landmark_model

needs_dlib = pytest.mark.skipif(
    detect.available() is not None, reason="dlib is not installed (the predict extra)"
)


def textured(size=200, seed=0) -> Image.Image:
    """A smooth random RGB image (so that resampling errors stay small)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (size // 10, size // 10, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)


def test_similarity_recovers_a_rotation_scale_and_shift():
    theta = np.radians(20)
    matrix = 1.7 * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    source = LANDMARKS
    target = source @ matrix.T + [12.0, -5.0]
    found = similarity(source, target)
    np.testing.assert_allclose(found[:, :2], matrix, atol=1e-9)
    np.testing.assert_allclose(found[:, 2], [12.0, -5.0], atol=1e-9)


def test_a_face_whose_landmarks_sit_where_utkface_has_them_is_cut_out_as_it_is():
    image = textured()
    face = Face(box=(10, 10, 180, 180), score=1.0, landmarks=LANDMARKS - 0.5)
    crop = crop_face(image, face)
    assert crop.how == "landmarks" and crop.image.size == (UTKFACE_SIZE, UTKFACE_SIZE)
    np.testing.assert_allclose(crop.corners, [[0, 0], [200, 0], [200, 200], [0, 200]], atol=1e-6)
    assert abs(crop.angle) < 1e-9
    difference = np.abs(np.asarray(crop.image, float) - np.asarray(image, float))
    assert difference.mean() < 1.0


def test_a_turned_face_is_levelled_and_its_margin_scales_the_crop_about_its_centre():
    image = Image.new("RGB", (600, 600), (128, 128, 128))
    crop = textured(seed=1)
    corners = synthetic.paste(image, crop, (300, 300), 300, 12.0)
    # the landmarks, where the paste put them: the template mapped like the crop's corners
    to_canvas = similarity(np.array([[0, 0], [200, 0], [200, 200], [0, 200]], float), corners)
    points = LANDMARKS @ to_canvas[:, :2].T + to_canvas[:, 2]
    face = Face(box=(150, 150, 300, 300), score=1.0, landmarks=points - 0.5)
    cut = crop_face(image, face)
    assert cut.angle == pytest.approx(12.0, abs=0.01)
    assert synthetic.polygon_iou(cut.corners, corners) > 0.98
    original = np.asarray(crop, float)
    assert np.abs(np.asarray(cut.image, float) - original)[20:-20, 20:-20].mean() < 4
    looser = crop_face(image, face, margin=1.5)
    side = np.linalg.norm(looser.corners[1] - looser.corners[0])
    assert side == pytest.approx(1.5 * 300, rel=1e-3)
    np.testing.assert_allclose(looser.corners.mean(0), corners.mean(0), atol=0.5)


def test_without_landmarks_the_box_sits_where_boxes_sit_in_utkface_crops():
    image = textured(400)
    face = Face(box=(100, 120, 150, 150), score=1.0)
    cut = crop_face(image, face)
    assert cut.how == "box" and cut.angle == 0
    side = 150 / align.BOX_SIDE
    x, y = cut.corners[0]
    assert cut.corners[1][0] - x == pytest.approx(side)
    assert 100 + 75 - x == pytest.approx(align.BOX_CENTRE[0] * side)
    assert 120 + 75 - y == pytest.approx(align.BOX_CENTRE[1] * side)


def test_a_crop_beyond_the_photo_is_filled_with_grey():
    image = Image.new("RGB", (100, 100), (0, 0, 0))
    cut = crop_face(image, Face(box=(60, 60, 80, 80), score=1.0))
    pixels = np.asarray(cut.image)
    assert tuple(pixels[-1, -1]) == align.FILL and tuple(pixels[0, 0]) == (0, 0, 0)


def test_large_faces_are_shrunk_by_area_averaging_not_aliased():
    stripes = np.zeros((2000, 2000, 3), np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes: any sampling without averaging aliases
    image = Image.fromarray(stripes)
    cut = crop_face(image, Face(box=(500, 500, 935, 935), score=1.0))
    assert abs(np.asarray(cut.image, float).mean() - 127.5) < 3
    assert np.asarray(cut.image, float)[10:-10, 10:-10].std() < 10


def test_model_input_is_what_the_image_cache_gives_for_a_utkface_jpeg(tmp_path):
    crop = textured(seed=3)
    path = tmp_path / "crop.jpg"
    crop.save(path, quality=95)
    with Image.open(path) as decoded:
        ours = model_input(decoded.convert("RGB"), 64)
    cached = load_image(path, 64)
    assert ours.shape == cached.shape == (64, 64, 3)
    assert np.abs(ours.astype(float) - cached).mean() < 2.0


def test_canvases_know_where_their_faces_are():
    rng = np.random.default_rng(0)
    for background in ("noise", "blur"):
        canvas = synthetic.compose(textured(), rng, background)
        (corners,) = canvas.corners
        side = np.linalg.norm(corners[1] - corners[0])
        assert canvas.image.width == canvas.image.height == round(3 * side)
        assert 0.6 * 200 - 1 <= side <= 1.5 * 200 + 1
        assert corners.min() >= 0 and corners.max() <= canvas.image.width
    many = synthetic.compose_many([textured(seed=s) for s in range(3)], rng)
    assert len(many.corners) == 3 and len(many.face_boxes()) == 3


def test_detection_check_counts_hits_misses_and_false_detections():
    rng = np.random.default_rng(0)
    made = [synthetic.compose(textured(), rng) for _ in range(4)]
    truths = [canvas.face_boxes()[0] for canvas in made]
    answers = iter([[truths[0]], [], [truths[2], (0, 0, 5, 5)], [(0, 0, 5, 5)]])
    result = synthetic.detection_check(made, lambda image: next(answers))
    assert result["recall"] == 0.5 and result["false_per_image"] == 0.5


def test_polygon_iou():
    square = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)
    assert synthetic.polygon_iou(square, square) == pytest.approx(1.0)
    assert synthetic.polygon_iou(square, square + np.array([5, 0])) == pytest.approx(
        1 / 3, abs=0.01
    )
    assert synthetic.polygon_iou(square, square + np.array([20, 0])) == 0.0


@needs_dlib
def test_the_detector_finds_nothing_in_a_plain_photo_and_ships_its_landmark_model():
    detector = FaceDetector()
    assert detector(np.full((300, 400, 3), 128, np.uint8)) == []
    assert detector(np.full((300, 400), 128, np.uint8)) == []  # greyscale arrays too
    if landmark_model() is not None:
        assert detector.has_landmarks


@needs_dlib
@pytest.mark.real_data
def test_real_faces_are_found_and_cut_out_close_to_their_original_crops(real_faces):
    files, _ = real_faces
    detector = FaceDetector()
    made = synthetic.canvases(files, seed=15)
    result = synthetic.detection_check(made, lambda image: [f.box for f in detector(image)])
    assert result["recall"] >= 0.7 and result["false_per_image"] <= 0.3
    ious = []
    for canvas in made:
        truth = canvas.face_boxes()[0]
        faces = [f for f in detector(np.asarray(canvas.image)) if synthetic.is_of(f.box, truth)]
        if faces:
            ious.append(
                synthetic.polygon_iou(crop_face(canvas.image, faces[0]).corners, canvas.corners[0])
            )
    assert np.median(ious) > 0.8


@needs_dlib
@pytest.mark.real_data
def test_calibration_on_real_crops_is_close_to_the_stored_constants(real_faces):
    files, _ = real_faces
    measured = align.calibrate(files, FaceDetector())
    assert measured["found"] >= 0.7
    if "landmarks" in measured:
        assert np.abs(np.array(measured["landmarks"]) - LANDMARKS).mean() < 8
    assert abs(measured["box_side"] - align.BOX_SIDE) < 0.15


@needs_dlib
def test_faces_found_in_a_turned_image_are_mapped_back(red_squares, squares_photo):
    detector = FaceDetector(turns=(15.0,))
    detector._find = red_squares  # finds red squares, wherever the image is turned
    photo = np.asarray(squares_photo(size=(300, 200), squares=((180, 60, 50),)))
    (face,) = detector._find_turned(photo, 15.0)
    x, y, w, h = face.box
    assert (x + w / 2, y + h / 2) == pytest.approx((205, 85), abs=2)
    plain = np.full((200, 300, 3), 128, np.uint8)
    assert detector(plain) == []  # searched turned too, and still nothing


def test_crop_geometry_and_margin_check_measure_found_faces(tmp_path, red_squares, tiny_model_file):
    from agegender.predict import load_model

    crop = textured(seed=4)
    side = round(align.BOX_SIDE * 200)
    x, y = (round(c * 200 - side / 2) for c in align.BOX_CENTRE)
    crop.paste((230, 20, 20), (x, y, x + side, y + side))
    crop.save(tmp_path / "30_1_0_20170101000000000.jpg.chip.jpg", quality=95)
    files = [tmp_path / "30_1_0_20170101000000000.jpg.chip.jpg"]  # one: a noise background
    labels = pd.DataFrame({"age": [30], "gender": [1]})
    model = load_model(tiny_model_file)
    result = synthetic.crop_geometry(files, labels, red_squares, model)
    assert result["found"] == 1.0 and result["by"] == {"box": 1} and result["image_size"] == 16
    assert result["crop_iou"]["mean"] > 0.6 and 0.8 < result["side_ratio"] < 1.4
    assert result["age_difference"] >= 0 and len(result["rows"]) == 1
    margins = synthetic.margin_check(files, labels, red_squares, model, margins=(0.8, 1.0, 1.2))
    assert list(margins["margin"]) == [0.8, 1.0, 1.2] and (margins["faces"] == 1).all()
