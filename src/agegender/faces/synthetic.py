"""Photos made from UTKFace crops, whose faces' true places are known: for measuring how well faces
are found (`detection_check`), how well they are cut out again (`crop_geometry`) and what the
crop's margin does to a model (`margin_check`).

A canvas is three times as large as the crop pasted into it, at a random position, scale (0.6 to
1.5 times UTKFace's 200 px) and angle (+-15 degrees), on a background of grey noise or of a
blurred, enlarged copy of the face itself (alternately). The crop's corners in the canvas are
known exactly, so a recovered crop can be compared with the original one.

Measured when this was written (300 test-split faces drawn with seed 15; the cpu profile's
vgg16_features model, 64 px, test age MAE 12.3): faces found 98.3% (all 295 by their landmarks);
recovered crop against the original, IoU mean 0.928, median 0.939, 10th percentile 0.877, side
ratio median 1.006, centre shift median 1.2% of the side, angle error 1.2 degrees; the model's
answers on recovered against original crops: age 1.41 years apart on average, gender the same for
92.2% (age MAE 12.83 against 12.71, gender accuracy 0.800 against 0.803). Margin (crop side
against UTKFace's framing) 0.7 / 0.8 / 0.9 / 1.0 / 1.1 / 1.2 / 1.3 / 1.5: age MAE 13.12 / 12.91 /
12.86 / 12.83 / 13.37 / 13.64 / 14.05 / 14.41, gender accuracy 0.654 / 0.729 / 0.793 / 0.800 /
0.790 / 0.763 / 0.692 / 0.654: UTKFace's own framing is the best.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter

from agegender.faces.align import UTKFACE_SIZE, crop_face, model_input
from agegender.faces.detect import Face

SCALES = (0.6, 1.5)
ANGLE = 15.0
CANVAS = 3  # the canvas's side, in crop sides
# A detection is of the face when its box overlaps the face's true box by this IoU, or its
# centre is inside that box. The true box is the central FACE_SHARE of the (turned) crop.
MIN_IOU = 0.3
FACE_SHARE = 0.6
MARGINS = (0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.5)


@dataclass(frozen=True)
class Canvas:
    """A photo with UTKFace crops pasted into it.

    Attributes:
        image: the photo, RGB.
        corners: per face, its crop's corners in the photo (continuous coordinates), ``(4, 2)``,
            top-left, top-right, bottom-right, bottom-left of the crop.
    """

    image: Image.Image
    corners: list[np.ndarray]

    def face_boxes(self, share: float = FACE_SHARE) -> list[tuple[float, float, float, float]]:
        """Each face's true box ``(x, y, w, h)``: the bounding box of its crop's central `share`."""
        boxes = []
        for corners in self.corners:
            centre = corners.mean(0)
            inner = centre + share * (corners - centre)
            (x0, y0), (x1, y1) = inner.min(0), inner.max(0)
            boxes.append((x0, y0, x1 - x0, y1 - y0))
        return boxes


def _background(crop: Image.Image, side: int, rng: np.random.Generator, kind: str) -> Image.Image:
    if kind == "blur":
        large = crop.resize((side, side), Image.Resampling.BILINEAR)
        return large.filter(ImageFilter.GaussianBlur(side / 24))
    coarse = rng.normal(128, 25, (side // 8 + 1, side // 8 + 1, 3)).clip(0, 255).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((side, side), Image.Resampling.BICUBIC))
    noisy = smooth + rng.normal(0, 10, smooth.shape)
    return Image.fromarray(noisy.clip(0, 255).astype(np.uint8))


def paste(canvas: Image.Image, crop: Image.Image, centre, side: int, angle: float) -> np.ndarray:
    """Paste `crop`, resized to `side` and turned by `angle` degrees (counter-clockwise), centred at
    `centre` of `canvas` (in place); returns its corners in the canvas."""
    crop = crop.convert("RGB").resize((side, side), Image.Resampling.LANCZOS)
    turned = crop.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    mask = Image.new("L", (side, side), 255).rotate(
        angle, resample=Image.Resampling.BICUBIC, expand=True
    )
    left = round(centre[0] - turned.width / 2)
    top = round(centre[1] - turned.height / 2)
    canvas.paste(turned, (left, top), mask)
    middle = np.array([left + turned.width / 2, top + turned.height / 2])
    theta = np.radians(angle)
    # counter-clockwise on screen (y down): x' = x cos + y sin, y' = -x sin + y cos
    turn = np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])
    square = side / 2 * np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float)
    return middle + square @ turn.T


def compose(crop: Image.Image, rng: np.random.Generator, background: str = "noise") -> Canvas:
    """One face in a canvas three times its size (see the module's docstring).

    Args:
        crop: a UTKFace crop.
        rng: where the position, scale and angle come from.
        background: ``"noise"`` (grey noise) or ``"blur"`` (a blurred copy of the face).
    """
    side = round(UTKFACE_SIZE * rng.uniform(*SCALES))
    angle = float(rng.uniform(-ANGLE, ANGLE))
    size = CANVAS * side
    image = _background(crop.convert("RGB"), size, rng, background)
    reach = side * (abs(np.cos(np.radians(angle))) + abs(np.sin(np.radians(angle)))) / 2
    centre = rng.uniform(reach + 1, size - reach - 1, 2)
    return Canvas(image=image, corners=[paste(image, crop, centre, side, angle)])


def compose_many(crops, rng: np.random.Generator, side: int = 160) -> Canvas:
    """Several faces side by side in one canvas (a group photo): a row of `side`-px crops with
    gaps, on grey noise, each turned by a few degrees."""
    gap = side // 2
    width, height = len(crops) * (side + gap) + gap, side + 2 * gap
    image = _background(Image.new("RGB", (8, 8), (128, 128, 128)), max(width, height), rng, "noise")
    image = image.crop((0, 0, width, height))
    corners = []
    for i, crop in enumerate(crops):
        centre = (gap + i * (side + gap) + side / 2, height / 2)
        corners.append(paste(image, crop, centre, side, float(rng.uniform(-5, 5))))
    return Canvas(image=image, corners=corners)


def canvases(files, seed: int = 15) -> list[Canvas]:
    """One canvas per UTKFace file (backgrounds alternating noise and blur), from `seed`."""
    rng = np.random.default_rng(seed)
    made = []
    for i, file in enumerate(files):
        with Image.open(file) as crop:
            made.append(compose(crop.convert("RGB"), rng, ("noise", "blur")[i % 2]))
    return made


def box_iou(a, b) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    width = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    height = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = width * height
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def is_of(box, truth) -> bool:
    """Whether a detected box is of the face whose true box is `truth` (see `MIN_IOU`)."""
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    tx, ty, tw, th = truth
    return box_iou(box, truth) >= MIN_IOU or (tx <= cx <= tx + tw and ty <= cy <= ty + th)


def polygon_iou(a: np.ndarray, b: np.ndarray, resolution: int = 400) -> float:
    """Intersection over union of two polygons (``(n, 2)`` corners), by drawing both on a grid of
    about `resolution` px across their joint extent (exact to about 1/resolution)."""
    points = np.vstack([a, b])
    low, high = points.min(0), points.max(0)
    scale = resolution / max(high - low)
    masks = []
    for polygon in (a, b):
        mask = Image.new("1", (resolution + 2, resolution + 2), 0)
        ImageDraw.Draw(mask).polygon([tuple(p) for p in (polygon - low) * scale + 1], fill=1)
        masks.append(np.asarray(mask))
    union = (masks[0] | masks[1]).sum()
    return float((masks[0] & masks[1]).sum() / union) if union else 0.0


def detection_check(made: list[Canvas], detect) -> dict:
    """How well `detect` (an image array -> list of ``(x, y, w, h)`` boxes) finds the faces.

    Returns:
        ``images``, ``recall`` (share of faces found), ``false_per_image`` (boxes that are of no
        face, or a second box of one, per image) and ``images_per_s``.
    """
    found = false = faces = 0
    seconds = 0.0
    for canvas in made:
        pixels = np.asarray(canvas.image)
        started = time.perf_counter()
        boxes = list(detect(pixels))
        seconds += time.perf_counter() - started
        for truth in canvas.face_boxes():
            faces += 1
            match = next((box for box in boxes if is_of(box, truth)), None)
            if match is not None:
                found += 1
                boxes.remove(match)
        false += len(boxes)
    return {
        "images": len(made),
        "recall": found / max(faces, 1),
        "false_per_image": false / max(len(made), 1),
        "images_per_s": len(made) / seconds if seconds else float("nan"),
    }


@dataclass(frozen=True)
class Found:
    """A canvas made from one UTKFace crop, and the face a detector found of it.

    Attributes:
        file: the crop's file.
        canvas: the photo it was pasted into (`compose`).
        face: the detected face whose box is of the pasted one (`is_of`), or None.
    """

    file: Path
    canvas: Canvas
    face: Face | None


def find_faces(files, detector, seed: int = 15) -> list[Found]:
    """One canvas per file (`canvases`), and the face `detector` finds of it (the largest box
    that is of the pasted face; None where none is)."""
    found = []
    for file, canvas in zip(files, canvases(files, seed), strict=True):
        truth = canvas.face_boxes()[0]
        faces = [face for face in detector(np.asarray(canvas.image)) if is_of(face.box, truth)]
        found.append(Found(Path(file), canvas, faces[0] if faces else None))
    return found


def _predict(model, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out = model.predict(images, batch_size=64, verbose=0)
    if isinstance(out, dict):
        return np.ravel(out["age"]), np.ravel(out["gender"])
    names = list(model.output_names)
    return np.ravel(out[names.index("age")]), np.ravel(out[names.index("gender")])


def input_shape(model) -> tuple[int, int]:
    """The side and the channels (3: RGB, 1: greyscale) of the images a model takes."""
    shape = model.inputs[0].shape
    return int(shape[1]), int(shape[-1])


def crop_geometry(files, labels: pd.DataFrame, detector, model, *, seed: int = 15) -> dict:
    """How close the crops cut from canvases are to the original crops, and what the difference
    does to a model's answers.

    Args:
        files: UTKFace crop files (e.g. 300 test-split ones).
        labels: their rows of the split (``age``, ``gender``), in the same order.
        detector: an `agegender.faces.detect.FaceDetector`.
        model: a trained model (outputs ``age``, ``gender``); its input size and channels are
            used.
        seed: the canvases' seed.

    Returns:
        See `geometry_of`.
    """
    return geometry_of(find_faces(files, detector, seed), labels, model)


def geometry_of(found: list[Found], labels: pd.DataFrame, model) -> dict:
    """`crop_geometry` of faces already found (`find_faces`), `labels` in the same order.

    Returns:
        ``faces``, ``found`` (share where the face was found), and over the found ones:
        ``crop_iou`` (mean, median and 10th percentile of the IoU of the recovered crop's region
        with the original's, in canvas coordinates), ``angle_error`` (mean absolute, degrees),
        ``side_ratio`` (median of the recovered crop's side over the original's), ``centre_shift``
        (median distance between their centres, in original crop sides),
        ``age_difference`` (mean absolute difference in years between the predictions on the
        recovered and the original crops), ``gender_agreement`` (share of equal answers at 0.5),
        and the age MAE and gender accuracy of both against the labels. Also the table
        (``rows``).
    """
    size, channels = input_shape(model)
    rows, originals, recovered = [], [], []
    for item, (_, label) in zip(found, labels.iterrows(), strict=True):
        if item.face is None:
            rows.append({"file": str(item.file), "found": False})
            continue
        canvas = item.canvas
        crop = crop_face(canvas.image, item.face)
        with Image.open(item.file) as original:
            originals.append(model_input(original.convert("RGB"), size, channels))
        recovered.append(model_input(crop.image, size, channels))
        true_angle = _angle(canvas.corners[0])
        rows.append(
            {
                "file": str(item.file),
                "found": True,
                "how": crop.how,
                "crop_iou": polygon_iou(crop.corners, canvas.corners[0]),
                "side_ratio": _side(crop.corners) / _side(canvas.corners[0]),
                "centre_shift": float(
                    np.linalg.norm(crop.corners.mean(0) - canvas.corners[0].mean(0))
                    / _side(canvas.corners[0])
                ),
                "angle_error": abs(crop.angle - true_angle),
                "age": label["age"],
                "gender": label["gender"],
            }
        )
    table = pd.DataFrame(rows, columns=["file", "found"] if not rows else None)
    if recovered:
        used = table.index[table["found"]]
        table.loc[used, "age_original"], table.loc[used, "female_original"] = _predict(
            model, np.stack(originals)
        )
        table.loc[used, "age_recovered"], table.loc[used, "female_recovered"] = _predict(
            model, np.stack(recovered)
        )
    found = table[table["found"].astype(bool)]
    ious = found["crop_iou"].to_numpy() if len(found) else np.array([np.nan])
    return {
        "faces": len(table),
        "found": float(table["found"].mean()) if len(table) else float("nan"),
        "by": found["how"].value_counts().to_dict() if len(found) else {},
        "crop_iou": {
            "mean": float(np.mean(ious)),
            "median": float(np.median(ious)),
            "p10": float(np.percentile(ious, 10)),
        },
        "angle_error": float(found["angle_error"].mean()) if len(found) else float("nan"),
        "side_ratio": float(found["side_ratio"].median()) if len(found) else float("nan"),
        "centre_shift": float(found["centre_shift"].median()) if len(found) else float("nan"),
        "age_difference": float(np.mean(np.abs(found["age_original"] - found["age_recovered"])))
        if len(found)
        else float("nan"),
        "gender_agreement": float(
            np.mean((found["female_original"] >= 0.5) == (found["female_recovered"] >= 0.5))
        )
        if len(found)
        else float("nan"),
        "age_mae_original": _mae(found, "age_original"),
        "age_mae_recovered": _mae(found, "age_recovered"),
        "gender_accuracy_original": _accuracy(found, "female_original"),
        "gender_accuracy_recovered": _accuracy(found, "female_recovered"),
        "image_size": size,
        "rows": table,
    }


def margin_check(
    files, labels: pd.DataFrame, detector, model, *, margins=MARGINS, seed: int = 15
) -> pd.DataFrame:
    """A model's age MAE and gender accuracy against the crop's margin (1: UTKFace's framing),
    on faces found in canvases made from `files` (as `crop_geometry`); see `margins_of`."""
    return margins_of(find_faces(files, detector, seed), labels, model, margins=margins)


def margins_of(found: list[Found], labels: pd.DataFrame, model, *, margins=MARGINS) -> pd.DataFrame:
    """`margin_check` of faces already found (`find_faces`), `labels` in the same order: one row
    per margin, with ``faces`` (how many were found and used; metrics are NaN where none
    was)."""
    size, channels = input_shape(model)
    used = [
        (item, label)
        for item, (_, label) in zip(found, labels.iterrows(), strict=True)
        if item.face is not None
    ]
    ages = np.array([label["age"] for _, label in used], float)
    genders = np.array([label["gender"] for _, label in used])
    rows = []
    for margin in margins:
        age_mae = accuracy = float("nan")
        if used:
            pixels = np.stack(
                [
                    model_input(
                        crop_face(item.canvas.image, item.face, margin=margin).image,
                        size,
                        channels,
                    )
                    for item, _ in used
                ]
            )
            age, female = _predict(model, pixels)
            age_mae = float(np.mean(np.abs(age - ages)))
            accuracy = float(np.mean((female >= 0.5) == (genders == 1)))
        rows.append(
            {"margin": margin, "faces": len(used), "age_mae": age_mae, "gender_accuracy": accuracy}
        )
    return pd.DataFrame(rows)


def _side(corners: np.ndarray) -> float:
    return float(np.linalg.norm(corners[1] - corners[0]))


def _angle(corners: np.ndarray) -> float:
    edge = corners[1] - corners[0]
    return float(np.degrees(np.arctan2(-edge[1], edge[0])))


def _mae(table: pd.DataFrame, column: str) -> float:
    if not len(table):
        return float("nan")
    return float(np.mean(np.abs(table[column] - table["age"])))


def _accuracy(table: pd.DataFrame, column: str) -> float:
    if not len(table):
        return float("nan")
    return float(np.mean((table[column] >= 0.5) == (table["gender"] == 1)))
