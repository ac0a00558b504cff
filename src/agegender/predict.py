"""Age and gender of the faces in new photos, with a model trained here.

For each photo: decode it upright (EXIF orientation) as RGB, find the faces
(`agegender.faces.detect`, dlib's HOG detector and five-point landmarks), cut each out as UTKFace's
crops were cut (`agegender.faces.align`: 200 x 200, eyes level, the same framing), shrink it as
the models' image cache shrinks UTKFace's images, and ask the model. ::

    from agegender.predict import predict
    table = predict(["group.jpg", "photos/"])             # the default model
    table = predict("me.jpg", model="results/cpu/vgg16_features")

One row per face: ``file``, ``face`` (its number in the photo, largest first), ``box`` (``x, y,
w, h`` in the upright photo's pixels), ``age`` (years), ``female_probability``, ``gender``
(``"female"`` where that is at least 0.5, else ``"male"``); ``age_low``/``age_high`` (an 80%
interval) only for a model whose age head gives a distribution (DEX). A photo with no face, or
that cannot be read, gets one row with ``face`` empty and the reason in ``problem`` (empty on the
face rows). ``table.attrs["model"]`` names the model file used.

The default model is the best model of the latest run on this machine: the most recently written
``best.keras``/``model.keras`` under ``data/work/<profile>/<run>/`` whose run has results
(``results/<profile>/<run>/``), among those whose results are newer than the model where there
are such (a model newer than its results is of a run still training).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from agegender.config import Paths
from agegender.errors import AgegenderError
from agegender.models.saved import MODEL_FILES, load_model, model_file

# Files a folder is searched for (a file named explicitly is tried whatever its name).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# Photos are decoded at most about this large (longer side; JPEGs shrink while decoding, by
# 1/2, 1/4 or 1/8): more pixels do not help the 200 px crops, and phone photos of 50 megapixels
# would take 150 MB each.
DECODE_SIDE = 4096
INTERVAL = (0.1, 0.9)  # the age interval of a DEX head: its distribution's 10th-90th percentiles
COLUMNS = ["file", "face", "box", "age", "female_probability", "gender", "problem"]
NO_FACE = "no face found"


@dataclass(frozen=True)
class Photo:
    """A decoded photo: RGB, upright; `scale` is the photo's pixels per decoded pixel."""

    path: Path
    image: Image.Image
    scale: float

    def box(self, face) -> tuple[int, ...]:
        """A found face's box, ``x, y, w, h``, in the photo's own pixels."""
        return tuple(round(v * self.scale) for v in face.box)


def open_photo(path: Path) -> Photo:
    """Decode a photo upright (EXIF orientation) as RGB, at most about `DECODE_SIDE` px.

    Greyscale, CMYK, palette, 16-bit and transparent images become RGB (transparency on mid grey:
    `agegender.data.cache.as_mode`).

    Raises:
        AgegenderError: no such file, not an image, a truncated or damaged one, or one too
            large to decode.
    """
    from agegender.data.cache import as_mode

    path = Path(path)
    if path.is_dir():
        raise AgegenderError(f"{path}: a folder without images ({', '.join(IMAGE_SUFFIXES)})")
    if not path.exists():
        raise AgegenderError(f"{path}: no such file or folder")
    try:
        with Image.open(path) as image:
            width = image.width
            image.draft("RGB", (DECODE_SIDE, DECODE_SIDE))
            scale = width / image.width
            rgb = as_mode(image, "RGB")  # decodes: a truncated file fails here
            if max(rgb.size) > DECODE_SIDE * 2:  # not a JPEG, or one that cannot shrink enough
                factor = max(rgb.size) / DECODE_SIDE
                size = (round(rgb.width / factor), round(rgb.height / factor))
                rgb = rgb.resize(size, Image.Resampling.BOX)
                scale *= factor
    except UnidentifiedImageError:
        raise AgegenderError(f"{path}: not an image (or of a format Pillow cannot read)") from None
    except Image.DecompressionBombError as error:
        raise AgegenderError(f"{path}: too large to decode safely ({error})") from None
    except (OSError, SyntaxError, ValueError) as error:
        # Pillow says "image file is truncated", "broken data stream", ... for damaged files
        raise AgegenderError(f"{path}: truncated or damaged image ({error})") from None
    return Photo(path=Path(path), image=rgb, scale=scale)


def photo_files(paths) -> list[Path]:
    """The files to read: each path given, a folder standing for its images (`IMAGE_SUFFIXES`,
    not recursive, sorted by name). A path that does not exist, or a folder without images, is
    kept as it is, for `open_photo` to say so."""
    if isinstance(paths, str | Path):
        paths = [paths]
    files = []
    for path in map(Path, paths):
        found = []
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
        files += found or [path]
    return files


def default_model(paths: Paths | None = None) -> Path:
    """The best model of the latest run on this machine (see the module's docstring).

    Raises:
        AgegenderError: no trained model with results here.
    """
    paths = paths or Paths.default()
    candidates = []
    for run in sorted(paths.data.glob("work/*/*")):
        results = paths.run_results(run.parent.name, run.name) / "predictions.csv"
        if not results.is_file():
            continue
        for file in reversed(MODEL_FILES):  # a model trained on features: model.keras first
            if (run / file).is_file():
                written = (run / file).stat().st_mtime
                # finished: its results were written after it (not a run still training)
                candidates.append((results.stat().st_mtime >= written, written, run / file))
                break
    if not candidates:
        raise AgegenderError(
            f"No trained model with results in {paths.data / 'work'}: train one with `agegender "
            "run <profile> --only <model>` (e.g. `agegender run cpu --only vgg16_features`), or "
            "name one with --model (a results folder such as results/cpu/vgg16_features, or a "
            ".keras file)."
        )
    return max(candidates)[2]


def model_path(model, paths: Paths | None = None) -> Path:
    """The ``.keras`` file of `model`: a ``.keras`` file, a run's results folder
    (``results/<profile>/<run>``), a work folder (`agegender.models.saved.model_file`), or None
    for `default_model`."""
    paths = paths or Paths.default()
    return default_model(paths) if model is None else model_file(model, paths)


class Predictor:
    """A model and a face detector, ready for photos (`predict` makes one per call).

    Args:
        model: a loaded Keras model, a path (see `model_path`) or None (the default model).
        detector: an `agegender.faces.detect.FaceDetector` (default: a new one).
    """

    def __init__(self, model=None, detector=None, paths: Paths | None = None):
        if model is None or isinstance(model, str | Path):
            self.model_file = model_path(model, paths)
            self.model = load_model(self.model_file, paths)
        else:
            self.model, self.model_file = model, None
        shape = tuple(self.model.inputs[0].shape)
        if len(shape) != 4 or shape[1] != shape[2] or shape[3] not in (1, 3):
            raise AgegenderError(
                f"{self.name} takes inputs of shape {shape}, not square images: a model whose "
                "heads were trained on features keeps its end-to-end model in model.keras, "
                "beside best.keras (or give its results folder)."
            )
        self.size, self.channels = int(shape[1]), int(shape[3])
        self._detector = detector
        self._distribution = _distribution_model(self.model)

    @property
    def detector(self):
        """The face detector, made when first needed (images already cropped need none)."""
        if self._detector is None:
            from agegender.faces.detect import FaceDetector

            self._detector = FaceDetector()
        return self._detector

    @property
    def name(self) -> str:
        return str(self.model_file) if self.model_file else self.model.name

    def inputs(self, photo: Photo) -> tuple[list, np.ndarray]:
        """The faces found in a photo (largest first) and their crops as the model takes them
        (cut as UTKFace's were, `agegender.faces.align`); none: an empty list and array."""
        from agegender.faces.align import crop_face, model_input

        found = self.detector(np.asarray(photo.image))
        crops = [
            model_input(crop_face(photo.image, face).image, self.size, self.channels)
            for face in found
        ]
        return found, np.stack(crops) if crops else np.empty(
            (0, self.size, self.size, self.channels), np.uint8
        )

    def faces(self, photo: Photo) -> pd.DataFrame:
        """The table rows (see the module's docstring) of one decoded photo."""
        import keras

        found, pixels = self.inputs(photo)
        if not found:
            return _problem_rows(photo.path, NO_FACE)
        age, female = self.ask(pixels)
        table = pd.DataFrame(
            {
                "file": str(photo.path),
                "face": pd.array(range(len(found)), dtype="Int64"),
                "box": [photo.box(face) for face in found],
                "age": age.astype(float).round(1),
                "female_probability": female.astype(float).round(3),
                "gender": np.where(female >= 0.5, "female", "male"),
                "problem": "",
            }
        )
        if self._distribution is not None:
            bins = self._distribution(pixels, training=False)
            low, high = _interval(keras.ops.convert_to_numpy(bins))
            table.insert(4, "age_low", low)
            table.insert(5, "age_high", high)
        return table

    def ask(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The model's ages and probabilities of female for a batch of images."""
        import keras

        out = self.model(pixels, training=False)  # quicker than predict() for a photo's faces
        if not isinstance(out, dict):
            out = dict(zip(self.model.output_names, out, strict=True))
        age, female = (np.ravel(keras.ops.convert_to_numpy(out[k])) for k in ("age", "gender"))
        return age, female


def _distribution_model(model):
    """A model from images to the DEX age distribution, or None for a regression head."""
    try:
        from agegender.models.heads import age_distribution_model

        return age_distribution_model(model)
    except (ValueError, AttributeError, ImportError):
        return None


def _interval(bins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cumulative = np.cumsum(bins, axis=-1)
    low = (cumulative < INTERVAL[0]).sum(-1).astype(float)
    high = (cumulative < INTERVAL[1]).sum(-1).astype(float)
    return low, high


def _problem_rows(path: Path, problem: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "file": [str(path)],
            "face": pd.array([None], dtype="Int64"),
            "box": [None],
            "age": [np.nan],
            "female_probability": [np.nan],
            "gender": [None],
            "problem": [problem],
        }
    )


def predict(paths, model=None, *, annotate=None, detector=None, progress=None) -> pd.DataFrame:
    """Age and gender of every face in the photos.

    Args:
        paths: a photo, a folder of photos, or a list of them.
        model: a ``.keras`` file, a run's results folder (``results/cpu/vgg16_features``), a
            loaded Keras model, or None: the default model (see the module's docstring).
        annotate: a folder to write each photo into with its faces' boxes and ``age, gender``
            drawn (same name; other formats than JPEG and PNG as ``NAME.png``).
        detector: a face detector (default: `agegender.faces.detect.FaceDetector`).
        progress: called with each photo's rows as it is done (e.g. to print them).

    Returns:
        The table described in the module's docstring, with ``attrs["model"]``, and
        ``attrs["seconds"]``, ``attrs["photos"]``.

    Raises:
        AgegenderError: no model could be loaded. A photo that does not exist, cannot be read or
        has no face is a row of the table (``problem``), not an error.
    """
    files = photo_files(paths)
    predictor = model if isinstance(model, Predictor) else Predictor(model, detector)
    started = time.perf_counter()
    tables = []
    for file in files:
        try:
            photo = open_photo(file)
        except AgegenderError as error:
            rows = _problem_rows(file, str(error).removeprefix(f"{file}: "))
        else:
            rows = predictor.faces(photo)
            if annotate is not None:
                draw_faces(photo, rows, Path(annotate))
        tables.append(rows)
        if progress is not None:
            progress(rows)
    table = pd.concat(tables, ignore_index=True) if tables else _problem_rows(Path(), "")[:0]
    table.attrs.update(
        model=predictor.name,
        photos=len(files),
        seconds=round(time.perf_counter() - started, 3),
    )
    return table


def draw_faces(photo: Photo, rows: pd.DataFrame, folder: Path) -> Path:
    """Write `photo` with its faces' boxes and ``age, gender`` labels (`annotated`) into
    `folder`: same name; other formats than JPEG and PNG as ``NAME.png``."""
    image = annotated(photo, rows)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = photo.path.suffix.lower()
    out = folder / (photo.path.name + ("" if suffix in (".jpg", ".jpeg", ".png") else ".png"))
    if out.suffix.lower() == ".png":
        image.save(out)
    else:
        image.save(out, quality=92)
    return out


def annotated(photo: Photo, rows: pd.DataFrame) -> Image.Image:
    """A copy of `photo` with its faces' boxes (`rows` of the predict table) and ``age, gender``
    labels drawn: pink for female, blue for male."""
    image = photo.image.copy()
    draw = ImageDraw.Draw(image)
    width = max(2, round(max(image.size) / 400))
    font = _font(max(12, round(max(image.size) / 40)))
    for row in rows.itertuples():
        if row.box is None or pd.isna(row.face):
            continue
        x, y, w, h = (v / photo.scale for v in row.box)
        colour = (230, 60, 120) if row.gender == "female" else (40, 120, 230)
        draw.rectangle((x, y, x + w, y + h), outline=colour, width=width)
        label = f"{row.age:.0f}, {row.gender}"
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        ty = y - (bottom - top) - 2 * width if y - (bottom - top) - 2 * width >= 0 else y + h
        draw.rectangle((x, ty, x + right - left + 2 * width, ty + bottom + width), fill=colour)
        draw.text((x + width, ty), label, fill=(255, 255, 255), font=font)
    return image


def _font(size: int):
    try:
        return ImageFont.load_default(size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


def faces_of(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of faces (not of photos without one, nor of unreadable ones)."""
    return table[table["face"].notna()]


def photos_read(table: pd.DataFrame) -> int:
    """How many photos could be read (with or without faces)."""
    read = table["problem"].isin(["", NO_FACE])
    return int(table.loc[read, "file"].nunique())


def format_rows(rows: pd.DataFrame) -> str:
    """One line per face (or per photo without one), for people."""
    lines = []
    for row in rows.itertuples():
        if pd.isna(row.face):
            lines.append(f"{row.file}: {row.problem}")
            continue
        interval = f" ({row.age_low:.0f}-{row.age_high:.0f})" if "age_low" in rows.columns else ""
        x, y, w, h = row.box
        lines.append(
            f"{row.file}: face {row.face} at x={x} y={y} w={w} h={h}: age {row.age:.0f}{interval}, "
            f"{row.gender} (probability of female {row.female_probability:.2f})"
        )
    return "\n".join(lines)


def as_json(table: pd.DataFrame) -> dict:
    """The table as one JSON-ready object: ``model``, ``photos``, ``seconds``, ``faces`` (one
    object per face, ``box`` as ``[x, y, w, h]``) and ``problems`` (``file``, ``problem``: photos
    without a face or that could not be read)."""
    faces = faces_of(table).drop(columns="problem")
    records = []
    for record in faces.to_dict("records"):
        record["face"] = int(record["face"])
        record["box"] = [int(v) for v in record["box"]]
        records.append(record)
    problems = table.loc[table["face"].isna(), ["file", "problem"]]
    return {
        "model": table.attrs.get("model"),
        "photos": table.attrs.get("photos", table["file"].nunique()),
        "seconds": table.attrs.get("seconds"),
        "faces": records,
        "problems": problems.to_dict("records"),
    }


def as_csv(table: pd.DataFrame) -> str:
    """The table as CSV, the box as four columns ``x, y, w, h``; a photo without a face or that
    could not be read is a row with ``face`` empty and its ``problem``."""
    out = table.copy()
    boxes = [box if isinstance(box, tuple) else (None,) * 4 for box in out.pop("box")]
    position = out.columns.get_loc("face") + 1
    for i, name in enumerate("xywh"):
        out.insert(position + i, name, pd.array([box[i] for box in boxes], dtype="Int64"))
    return out.to_csv(index=False)


def summary(table: pd.DataFrame) -> str:
    """One line: the model, what was read and found, and how fast."""
    photos = table.attrs.get("photos", table["file"].nunique())
    faces = len(faces_of(table))
    no_face = int((table["problem"] == NO_FACE).sum())
    unreadable = int((~table["problem"].isin(["", NO_FACE])).sum())
    seconds = table.attrs.get("seconds") or 0.0
    speed = f"; {photos / seconds:.2f} photos/s, {faces / seconds:.2f} faces/s" if seconds else ""
    return (
        f"model {table.attrs.get('model')}: {photos} photo(s), {faces} face(s), "
        f"{no_face} without a face, {unreadable} unreadable, in {seconds:.1f} s{speed}"
    )
