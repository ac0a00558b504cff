"""Using a trained model on photos: what the chapter "Using a trained model" measures and says.

`measure` takes one trained model of a profile (a run's ``best.keras``, found through
`agegender.models.saved.model_file`) through the path `agegender predict` takes (find the faces,
cut them out as UTKFace's crops were cut, ask the model), on photos made from test-split faces
(`agegender.faces.synthetic`), and writes what it measured as one run::

    results/<profile>/crop_geometry/    metrics.json, predictions.csv, provenance.json

- ``predictions.csv``: one row per test-split face pasted into a photo of its own: whether the
  face was found, what placed its crop (landmarks or box), the recovered crop's IoU with the
  original crop, its side ratio, centre shift and angle error, the true labels, and the model's
  answers on the original crop and on the recovered one.
- ``metrics.json``: the summary of those rows (`agegender.faces.synthetic.geometry_of`),
  ``margins`` (age MAE and gender accuracy against the crop's margin, `synthetic.margins_of`) and
  ``group_photo`` (several faces in one photo: what was found, and what the model said of each).
- ``provenance.json``: as every run's, plus the model file and its sha256, the detector, and a
  ``fingerprint`` of everything the numbers depend on: a later run with the same fingerprint
  reuses them instead of measuring again.

The folder holds no peer and no baseline (its provenance has neither key), so
`agegender.results.store.load_peers` and `load_baselines` pass it by.

Keras is imported only to measure; reading a recorded run and making the chapter's text and
tables needs neither Keras nor dlib.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.io.formats.style import Styler
from PIL import Image

from agegender import provenance
from agegender.config import Paths
from agegender.data.dataset import UTKFace
from agegender.data.labels import AGE_BANDS, GENDERS, age_band
from agegender.data.manifest import dataset_fingerprint
from agegender.errors import AgegenderError
from agegender.faces import synthetic
from agegender.files import file_sha256, json_sha256, rows_sha256, seeded_key
from agegender.results import store
from agegender.results.store import RunResults
from agegender.results.summary import MarkdownText
from agegender.results.tables import styled

NAME = "crop_geometry"
CHAPTER = "08_using_a_model"  # the chapter that writes it
# Bump when what is measured or how it is recorded changes: earlier results are then redone.
FORMAT = 1
GROUP_SIDE = 160  # px of each face in the group photo (UTKFace's crops are 200)
DIGITS = {"age": 2, "share": 3}


def model_file(paths: Paths, profile: str, model: str) -> Path:
    """The trained model file of `model`'s run under `profile`
    (`agegender.models.saved.model_file` of ``results/<profile>/<model>``).

    Raises:
        AgegenderError: none has been trained there, saying how to train one.
    """
    from agegender.models.saved import model_file as find

    return find(paths.run_results(profile, model), paths)


def missing(paths: Paths, profile: str, model: str, detector=None) -> str | None:
    """Why `measure` cannot run here (no face detector: dlib is needed unless `detector` is
    given; no trained model), or None."""
    from agegender.faces import detect

    reason = detect.available() if detector is None else None
    if reason is not None:
        return f"No face detector here: {reason}."
    try:
        model_file(paths, profile, model)
    except AgegenderError:
        return (
            f"No `{model}` model has been trained under the `{profile}` profile here (none in "
            f"`data/work/{profile}/{model}/`): `agegender run {profile} --only {model}` trains "
            "one."
        )
    return None


def group_rows(split: pd.DataFrame, n: int, seed: int) -> np.ndarray:
    """`n` test rows of the split (indices into it) spread over the age bands: the test files in
    the order `seed` gives them (`agegender.files.seeded_key`, as `UTKFace.rows` draws its
    subsets), the next of each age band in turn, youngest band first."""
    test = split.index[split["split"] == "test"]
    order = sorted(test, key=lambda row: seeded_key(seed, split.at[row, "file"]))
    bands: dict[str, list] = {age_band(low): [] for low, _ in AGE_BANDS}
    for row in order:
        bands[age_band(int(split.at[row, "age"]))].append(row)
    chosen = []
    while len(chosen) < n and any(bands.values()):
        for members in bands.values():
            if members and len(chosen) < n:
                chosen.append(members.pop(0))
    return np.array([split.index.get_loc(row) for row in chosen], dtype=int)


def group_canvas(images: Path, files, seed: int) -> synthetic.Canvas:
    """The group photo: the crops of `files`, side by side (`synthetic.compose_many`), from
    `seed` (the same photo every time)."""
    crops = []
    for file in files:
        with Image.open(images / file) as crop:
            crops.append(crop.convert("RGB"))
    return synthetic.compose_many(crops, np.random.default_rng(seed), side=GROUP_SIDE)


def _detector_record(detector) -> dict:
    """What finds the faces, for the fingerprint and the provenance."""
    from agegender.faces import detect

    if not isinstance(detector, detect.FaceDetector):
        return {"detector": f"{type(detector).__module__}.{type(detector).__qualname__}"}
    landmarks = detector.landmark_file
    return {
        "detector": "agegender.faces.detect.FaceDetector (dlib HOG, five-point landmarks)",
        "versions": provenance.versions(("dlib-bin", "dlib")),
        "landmark_file_sha256": file_sha256(landmarks) if landmarks else None,
        "detect_side": detector.detect_side,
        "upsample_below": detector.upsample_below,
        "turns": list(detector.turns),
    }


def measure(
    data: UTKFace,
    *,
    profile: str,
    model: str = "custom_cnn",
    faces: int = 300,
    group_faces: int = 6,
    seed: int = 0,
    margins=synthetic.MARGINS,
    detector=None,
    fresh: bool = False,
) -> Path:
    """Measure the group photo, the crop geometry and the margin check with `model`'s trained
    model under `profile`, and write them as a run (see the module's docstring).

    Results already written for the same model file, split, faces, detector and settings are
    reused (their provenance's ``fingerprint``) unless `fresh` is set.

    Args:
        data: the prepared dataset.
        profile: whose trained model to use; names the results folder.
        model: the run whose model is used (``results/<profile>/<model>``).
        faces: test-split faces pasted into photos of their own (a fixed subset drawn with
            `seed`, as `UTKFace.rows` draws it).
        group_faces: faces in the group photo (`group_rows`).
        seed: which faces, and the photos made of them.
        margins: the crop margins to try (1: UTKFace's framing).
        detector: what finds the faces (default: `agegender.faces.detect.FaceDetector`).
        fresh: measure again even when matching results exist.

    Returns:
        The results folder, ``results/<profile>/crop_geometry/``.

    Raises:
        AgegenderError: no face detector or no trained model (`missing`), or results that are
            published and may not be replaced (`agegender.results.store.check_replaceable`).
    """
    started = time.time()
    reason = missing(data.paths, profile, model, detector)
    if reason:
        raise AgegenderError(reason)
    from agegender.faces.detect import FaceDetector

    detector = detector or FaceDetector()
    folder = data.paths.run_results(profile, NAME)
    weights = model_file(data.paths, profile, model)
    rows = data.rows("test", faces, seed)
    group = group_rows(data.split, group_faces, seed)
    split_sha256 = file_sha256(data.paths.split_file)
    model_sha256 = file_sha256(weights)
    finder = _detector_record(detector)
    parameters = {
        "model": model,
        "faces": faces,
        "group_faces": group_faces,
        "seed": seed,
        "margins": list(margins),
        "data": {
            "test": {"images": len(rows), "rows_sha256": rows_sha256(rows)},
            "group": {"images": len(group), "rows_sha256": rows_sha256(group)},
        },
    }
    fingerprint = json_sha256([FORMAT, model_sha256, split_sha256, parameters, finder])
    if not fresh and store.written_with(folder, fingerprint):
        return folder
    command = f"agegender run {profile} --only {CHAPTER}"
    store.check_replaceable(folder, profile=profile, run=NAME, command=command)

    from agegender.models.saved import load_model
    from agegender.predict import Predictor

    predictor = Predictor(load_model(weights, data.paths), detector)
    group_photo = _group_photo(data, predictor, group, seed)
    split = data.split.iloc[rows]
    files = [data.paths.images / file for file in split["file"]]
    found = synthetic.find_faces(files, predictor.detector, seed)
    geometry = synthetic.geometry_of(found, split[["age", "gender"]], predictor.model)
    margin_rows = synthetic.margins_of(
        found, split[["age", "gender"]], predictor.model, margins=margins
    )
    table = geometry.pop("rows")
    table["file"] = [Path(file).name for file in table["file"]]
    metrics = {
        **geometry,
        "channels": predictor.channels,
        "margins": margin_rows.to_dict("records"),
        "group_photo": group_photo,
    }
    record = provenance.collect(
        profile=profile,
        parameters=parameters,
        started=started,
        dataset_sha256=dataset_fingerprint(data.manifest),
        split_sha256=split_sha256,
        weights=f"the {model} model trained under this profile ({weights.name}, sha256 "
        f"{model_sha256[:12]})",
    )
    record["versions"].update(finder.get("versions", {}))
    record[NAME] = {
        "model_run": model,
        "model_file": str(weights.relative_to(data.paths.data))
        if weights.is_relative_to(data.paths.data)
        else weights.name,
        "model_sha256": model_sha256,
        "model_input": {"image_size": predictor.size, "channels": predictor.channels},
        "detector": finder,
        "canvases": {
            "scales": list(synthetic.SCALES),
            "angle": synthetic.ANGLE,
            "canvas": synthetic.CANVAS,
            "group_side": GROUP_SIDE,
        },
    }
    record["fingerprint"] = fingerprint
    return store.write_run(folder, predictions=table, metrics=metrics, provenance=record)


def _group_photo(data: UTKFace, predictor, rows: np.ndarray, seed: int) -> dict:
    """The group photo of the split's `rows`, through `agegender.predict.Predictor.faces` (as
    `agegender predict` reads a photo): its files and true labels, every face found
    (``detections``, the predict table's rows) and which of them is of which face (``matched``:
    the detection's number, or None)."""
    from agegender import predict

    split = data.split.iloc[rows]
    canvas = group_canvas(data.paths.images, split["file"], seed)
    photo = predict.Photo(path=Path("group_photo.png"), image=canvas.image, scale=1.0)
    table = predict.faces_of(predictor.faces(photo))
    detections = [
        {
            "face": int(row.face),
            "box": [int(v) for v in row.box],
            "age": float(row.age),
            "female_probability": float(row.female_probability),
            "gender": row.gender,
        }
        for row in table.itertuples()
    ]
    unmatched = list(range(len(detections)))
    matched = []
    for truth in canvas.face_boxes():
        hit = next((i for i in unmatched if synthetic.is_of(detections[i]["box"], truth)), None)
        if hit is not None:
            unmatched.remove(hit)
        matched.append(hit)
    return {
        "files": split["file"].tolist(),
        "age": split["age"].astype(int).tolist(),
        "gender": split["gender"].astype(int).tolist(),
        "detections": detections,
        "matched": matched,
    }


def recorded(paths: Paths, profile: str) -> RunResults | None:
    """The run written under `profile` (None where there is none)."""
    folder = paths.run_results(profile, NAME)
    return load(folder) if store.provenance_of(folder) is not None else None


def load(folder: Path) -> RunResults:
    """Read a run written by `measure` (`agegender.results.store.load` reads the runs of models,
    peers and baselines; this one has no training history).

    Raises:
        AgegenderError: the folder holds no complete run, or files that do not belong with its
            provenance (their sha256 differs from the one it names).
    """
    record = store.provenance_of(folder)
    if record is None or NAME not in record:
        raise AgegenderError(f"{folder} holds no complete {NAME} run: run its chapter first.")
    return store.load(folder)


def chapter_run(
    data: UTKFace,
    *,
    profile: str,
    model: str,
    faces: int,
    group_faces: int,
    seed: int,
    detector=None,
) -> tuple[RunResults | None, str]:
    """What the chapter shows: the run measured (or reused) here, else an earlier run's, with the
    reason it could not be measured here ('' when it was). Arguments as `measure`'s."""
    reason = missing(data.paths, profile, model, detector)
    if reason is None:
        measure(
            data,
            profile=profile,
            model=model,
            faces=faces,
            group_faces=group_faces,
            seed=seed,
            detector=detector,
        )
    return recorded(data.paths, profile), reason or ""


def notice(run: RunResults | None, reason: str, profile: str) -> MarkdownText:
    """The chapter's one notice: why nothing (or an earlier run's numbers) is shown, or that no
    face was found; '' when everything was measured here and faces were found."""
    if run is None:
        return _admonition(
            "warning",
            f"{reason} Nothing was measured, so this page shows no numbers; the commands "
            "below work as soon as both are there.",
        )
    if reason:
        record = run.provenance
        return _admonition(
            "note",
            f"{reason} The numbers below are those an earlier run recorded in "
            f"`results/{profile}/{NAME}/` (finished {record.get('finished_at')}, with the model "
            f"file of sha256 `{record[NAME]['model_sha256'][:12]}`; see the provenance card).",
        )
    if not _found_any(run):
        return _admonition(
            "warning",
            "The face detector found none of the faces in the photos made from the test split, "
            "so there is nothing to measure: the sections below say so instead of showing "
            "numbers. This is what happens when the images are not faces (the generated fixture "
            "images that the tests use where UTKFace is not available).",
        )
    return MarkdownText("")


def _admonition(kind: str, text: str) -> MarkdownText:
    return MarkdownText(f":::{{{kind}}}\n{text}\n:::")


def _found_any(run: RunResults) -> bool:
    group = run.metrics["group_photo"]
    return bool(run.metrics["found"]) or any(hit is not None for hit in group["matched"])


def _number(value, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _share(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def model_words(paths: Paths, profile: str, model: str) -> MarkdownText:
    """Where this profile's model lives and what its chapter measured of it, in a sentence."""
    folder = paths.run_results(profile, model)
    try:
        where = model_file(paths, profile, model)
    except AgegenderError:
        return MarkdownText(
            f"No `{model}` model has been trained under the `{profile}` profile on this machine: "
            f"`agegender run {profile} --only {model}` trains one into "
            f"`data/work/{profile}/{model}/`."
        )
    shown = where.relative_to(paths.data) if where.is_relative_to(paths.data) else where
    words = (
        f"Under the `{profile}` profile this chapter uses the `{model}` model, "
        f"`{paths.data.name}/{shown}`"
    )
    if store.provenance_of(folder) is None:
        return MarkdownText(words + ".")
    overall = store.load(folder).metrics["overall"]
    return MarkdownText(
        f"{words}, whose chapter measured a test age MAE of {overall['age_mae']:.2f} years and "
        f"a gender accuracy of {overall['gender_accuracy']:.3f} on "
        f"{overall['n']:,} UTKFace crops."
    )


def group_table(run: RunResults | None) -> Styler | MarkdownText:
    """The group photo's faces, left to right: true age and gender against the model's answers
    (``not found`` where the detector missed the face)."""
    if run is None:
        return MarkdownText("*Not measured here (see the notice at the top).*")
    group = run.metrics["group_photo"]
    rows = []
    for i, hit in enumerate(group["matched"]):
        found = group["detections"][hit] if hit is not None else None
        rows.append(
            {
                "face": i + 1,
                "true age": group["age"][i],
                "true gender": GENDERS[group["gender"][i]],
                "predicted age": f"{found['age']:.0f}" if found else "not found",
                "predicted gender": found["gender"] if found else "not found",
                "P(female)": f"{found['female_probability']:.2f}" if found else "",
            }
        )
    table = pd.DataFrame(rows).set_index("face").rename_axis(columns="face")
    return styled(table, "The group photo's faces, left to right", "group_photo")


def group_sentence(run: RunResults | None) -> str:
    """What the detector found in the group photo and how close the model's answers were."""
    if run is None:
        return ""
    group = run.metrics["group_photo"]
    hits = [(i, hit) for i, hit in enumerate(group["matched"]) if hit is not None]
    n = len(group["matched"])
    false = len(group["detections"]) - len(hits)
    extra = (
        f", and {false} box{'es' if false != 1 else ''} of no face"
        if false
        else ", and no box of anything else"
    )
    if not hits:
        return f"The detector found none of the {n} faces{extra}."
    errors = [abs(group["detections"][hit]["age"] - group["age"][i]) for i, hit in hits]
    right = sum(
        group["detections"][hit]["gender"] == GENDERS[group["gender"][i]] for i, hit in hits
    )
    return (
        f"The detector found {len(hits)} of the {n} faces{extra}. On the faces found, the "
        f"model's ages are {np.mean(errors):.1f} years off on average (at most "
        f"{max(errors):.0f}), and it named {right} of {len(hits)} genders right."
    )


def geometry_table(run: RunResults | None) -> Styler | MarkdownText:
    """How well the faces were found and cut out, and the model on the original against the
    recovered crops."""
    if run is None or not run.metrics["found"]:
        return MarkdownText("*No face was found, so nothing could be compared.*")
    m = run.metrics
    rows = {
        "age MAE (years)": (m["age_mae_original"], m["age_mae_recovered"], DIGITS["age"]),
        "gender accuracy": (
            m["gender_accuracy_original"],
            m["gender_accuracy_recovered"],
            DIGITS["share"],
        ),
    }
    table = pd.DataFrame(
        {
            name: {
                "on the original crops": _number(original, digits),
                "on the recovered crops": _number(recovered, digits),
            }
            for name, (original, recovered, digits) in rows.items()
        }
    ).T
    caption = f"The model on the {_found_count(m):,} faces found: original against recovered crops"
    return styled(table, caption, "crop_geometry")


def _found_count(metrics: dict) -> int:
    return round(metrics["found"] * metrics["faces"]) if metrics["found"] else 0


def geometry_sentence(run: RunResults | None) -> str:
    """The crop geometry in sentences: found share, IoU, scale, shift and angle, and what the
    difference did to the model's answers."""
    if run is None:
        return ""
    m = run.metrics
    if not m["found"]:
        return f"The detector found none of the {m['faces']:,} faces, so nothing was compared."
    found = _found_count(m)
    by = m.get("by") or {}
    how = ", ".join(f"{count:,} by {name}" for name, count in sorted(by.items()))
    iou = m["crop_iou"]
    return (
        f"The detector found {found:,} of the {m['faces']:,} faces ({_share(m['found'])}; {how}). "
        f"The crops cut out of the photos cover the original crops with an IoU of "
        f"{iou['mean']:.3f} on average (median {iou['median']:.3f}, 10th percentile "
        f"{iou['p10']:.3f}); their side is {m['side_ratio']:.3f} times the original's "
        f"(median), their centre {100 * m['centre_shift']:.1f}% of a side away (median), and "
        f"they are turned {m['angle_error']:.1f} degrees off on average. On the recovered crops "
        f"the model's ages differ from its ages on the original crops by "
        f"{m['age_difference']:.2f} years on average, and its gender answers agree for "
        f"{_share(m['gender_agreement'])} of the faces: an age MAE of "
        f"{m['age_mae_recovered']:.2f} years against {m['age_mae_original']:.2f} on the "
        f"original crops, a gender accuracy of {m['gender_accuracy_recovered']:.3f} against "
        f"{m['gender_accuracy_original']:.3f}."
    )


def margin_table(run: RunResults | None) -> pd.DataFrame | None:
    """The margin check, one row per margin (None where nothing was found)."""
    if run is None or not run.metrics["found"]:
        return None
    return pd.DataFrame(run.metrics["margins"])


def original_scores(run: RunResults | None) -> dict | None:
    """The model's age MAE and gender accuracy on the original crops of the faces found (what
    the margin check's curves are compared with), or None."""
    if run is None or not run.metrics["found"]:
        return None
    return {
        "age_mae": run.metrics["age_mae_original"],
        "gender_accuracy": run.metrics["gender_accuracy_original"],
    }


def margin_view(run: RunResults | None) -> Styler | MarkdownText:
    """`margin_table` as the chapter shows it."""
    table = margin_table(run)
    if table is None:
        return MarkdownText("*No face was found, so no margin could be tried.*")
    shown = pd.DataFrame(
        {
            "margin": table["margin"].map("{:g}".format),
            "age MAE (years)": table["age_mae"].map(lambda v: _number(v, DIGITS["age"])),
            "gender accuracy": table["gender_accuracy"].map(lambda v: _number(v, DIGITS["share"])),
        }
    ).set_index("margin")
    faces = int(table["faces"].iloc[0])
    caption = f"The model on the {faces:,} faces found, cut out with each margin (1: UTKFace's)"
    return styled(shown.rename_axis(columns="margin"), caption, "margins")


def best_margins(table: pd.DataFrame, column: str) -> list[float]:
    """The margins at which `column` is best (lowest age MAE, highest gender accuracy), as the
    chapter rounds it: several where they tie."""
    digits = DIGITS["age"] if column == "age_mae" else DIGITS["share"]
    values = table[column].round(digits)
    best = values.min() if column == "age_mae" else values.max()
    return table.loc[values == best, "margin"].tolist()


def _margins_words(margins: list[float]) -> str:
    shown = [f"{margin:g}" for margin in margins]
    if len(shown) == 1:
        return f"margin {shown[0]}"
    return f"margins {', '.join(shown[:-1])} and {shown[-1]}"


def margin_sentence(run: RunResults | None, model: str) -> str:
    """The margin figure's caption: what it shows, and where each metric is best."""
    table = margin_table(run)
    if table is None:
        return "No face was found, so no margin could be tried."
    age, gender = best_margins(table, "age_mae"), best_margins(table, "gender_accuracy")
    lowest = table.loc[table["margin"] == age[0], "age_mae"].iloc[0]
    highest = table.loc[table["margin"] == gender[0], "gender_accuracy"].iloc[0]
    return (
        f"Age MAE (above) and gender accuracy (below) of the {model} model on the "
        f"{int(table['faces'].iloc[0]):,} faces found, each cut out with margins from "
        f"{table['margin'].min():g} to {table['margin'].max():g} times UTKFace's framing (dotted "
        f"line: 1, UTKFace's own); dashed: the same faces' original crops. The lowest age MAE, "
        f"{lowest:.2f} years, is at {_margins_words(age)}; the highest gender accuracy, "
        f"{highest:.3f}, at {_margins_words(gender)}."
    )


def summary_sentence(run: RunResults | None, model: str) -> str:
    """The chapter's closing sentences, from the run's numbers."""
    if run is None:
        return "Nothing was measured here (see the notice at the top)."
    m = run.metrics
    if not _found_any(run):
        return (
            "The detector found no face in the photos made from the test split, so nothing was "
            "measured (see the notice at the top)."
        )
    words = [group_sentence(run)]
    if m["found"]:
        words.append(
            f"Over {m['faces']:,} test-split faces, each in a photo of its own, the detector "
            f"found {_share(m['found'])}, and the crops cut out of the photos matched the "
            f"originals with a median IoU of {m['crop_iou']['median']:.3f}. The {model} model's "
            f"age MAE was {m['age_mae_recovered']:.2f} years on them against "
            f"{m['age_mae_original']:.2f} on the original crops (gender accuracy "
            f"{m['gender_accuracy_recovered']:.3f} against {m['gender_accuracy_original']:.3f}). "
            f"Of the margins tried, {_margin_verdict(margin_table(run))}"
        )
    return " ".join(words)


def _margin_verdict(table: pd.DataFrame) -> str:
    """Whether UTKFace's own framing (margin 1) is where the model does best."""
    age, gender = best_margins(table, "age_mae"), best_margins(table, "gender_accuracy")
    if 1 in age and 1 in gender:
        return "UTKFace's own framing (1) did best on both: cut faces as UTKFace's were cut."
    return (
        f"the lowest age MAE was at {_margins_words(age)} and the highest gender accuracy at "
        f"{_margins_words(gender)} (UTKFace's framing is 1)."
    )


def annotated_group_photo(paths: Paths, run: RunResults | None) -> Image.Image | None:
    """The group photo with the boxes and answers the run recorded, drawn by
    `agegender.predict.annotated` (the photo is made again from its files and seed: neither
    the model nor the detector is needed). None without a run, or without the images."""
    if run is None:
        return None
    from agegender.predict import Photo, annotated

    group = run.metrics["group_photo"]
    if not all((paths.images / file).is_file() for file in group["files"]):
        return None
    canvas = group_canvas(paths.images, group["files"], run.provenance["parameters"]["seed"])
    rows = pd.DataFrame(group["detections"], columns=["face", "box", "age", "gender"])
    rows["box"] = [tuple(box) for box in rows["box"]]
    return annotated(Photo(path=Path("group_photo.png"), image=canvas.image, scale=1.0), rows)


def chapter_values(run: RunResults | None, reason: str, *, profile: str, model: str, paths: Paths):
    """Everything the chapter's text glues in (`agegender.results.summary.glue_all`)."""
    return {
        "notice": notice(run, reason, profile),
        "model_where": model_words(paths, profile, model),
        "group_sentence": group_sentence(run) or "Nothing was measured here.",
        "geometry_sentence": geometry_sentence(run) or "Nothing was measured here.",
        "margin_caption": margin_sentence(run, model) if run else "Nothing was measured here.",
        "summary_sentence": summary_sentence(run, model),
        "provenance_card": MarkdownText(provenance.card(run.provenance) if run else ""),
    }
