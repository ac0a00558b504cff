"""Fixtures of the predict tests: a tiny age and gender model saved as a .keras file, a fake face
detector that finds red squares (so that generated photos have "faces" at known places), and
real test-split faces where the real UTKFace is available."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from agegender.faces.detect import Face

RED = (230, 20, 20)


@pytest.fixture(scope="session")
def tiny_model_file(tmp_path_factory):
    """A .keras model from 16 px RGB images to ``age`` (the mean brightness) and ``gender``."""
    import keras

    images = keras.Input((16, 16, 3), name="image")
    mean = keras.layers.GlobalAveragePooling2D()(images)
    age = keras.layers.Dense(1, name="age", kernel_initializer="ones")(mean)
    gender = keras.layers.Dense(1, activation="sigmoid", name="gender")(mean)
    model = keras.Model(images, {"age": age, "gender": gender})
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    model.save(path)
    return path


def red_boxes(image: np.ndarray) -> list[tuple[int, int, int, int]]:
    """The boxes of the red squares in an image, left to right (squares in separate columns)."""
    red = (image[..., 0] > 180) & (image[..., 1] < 80) & (image[..., 2] < 80)
    columns = np.flatnonzero(red.any(0))
    boxes = []
    if not len(columns):
        return boxes
    runs = np.split(columns, np.flatnonzero(np.diff(columns) > 1) + 1)
    for run in runs:
        rows = np.flatnonzero(red[:, run[0] : run[-1] + 1].any(1))
        boxes.append((int(run[0]), int(rows[0]), len(run), int(rows[-1] - rows[0] + 1)))
    return boxes


class RedSquares:
    """A face detector for generated photos: every red square is a face (no landmarks)."""

    def __call__(self, image):
        faces = [Face(box=box, score=1.0) for box in red_boxes(np.asarray(image))]
        return sorted(faces, key=lambda face: -face.box[2] * face.box[3])


@pytest.fixture
def red_squares():
    return RedSquares()


def photo_with_squares(size=(240, 160), squares=((20, 30, 60),), background=(90, 140, 90)):
    """An RGB photo with red squares ``(x, y, side)`` on a plain background."""
    image = Image.new("RGB", size, background)
    for x, y, side in squares:
        image.paste(RED, (x, y, x + side, y + side))
    return image


@pytest.fixture(scope="session")
def real_faces(real_data):
    """Ten real test-split faces (files and their split rows), drawn with a fixed seed."""
    split = real_data.split
    test = split[split["split"] == "test"].sample(10, random_state=15)
    return [real_data.paths.images / file for file in test["file"]], test


@pytest.fixture
def squares_photo():
    """`photo_with_squares`, the factory of generated photos with "faces"."""
    return photo_with_squares
