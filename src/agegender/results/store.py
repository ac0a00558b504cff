"""The results folder, ``results/<profile>/<run>/``: its layout, how it is written, how it is read.

One folder per run (a model of `agegender.models.specs`, an off-the-shelf peer or a baseline;
a study's runs, `agegender.studies`, in ``results/<profile>/studies/<study>/<variant>/``; runs on
sets from elsewhere, `agegender.external`, in ``results/<profile>/external/<set>/<run>/``)::

    history.csv       one row per epoch, no gaps, no repeats (trained models only)
    metrics.json      test metrics with bootstrap intervals, per group (`evaluation.summarize`)
    predictions.csv   one row per test image
    provenance.json   data, parameters, weights, seed, backend, devices, versions, commit, time

`write_run` writes a folder as one unit: a reader sees the previous run's files or the new
run's, never a mix (a disk that fills half-way leaves the previous run whole). The provenance
names the sha256 of the other files, and `load` refuses a folder whose files do not match it.
Nothing here imports Keras: the comparison chapter reads results without loading a backend.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from agegender import evaluation
from agegender.config import Paths
from agegender.errors import AgegenderError
from agegender.files import file_sha256, replacing_folder
from agegender.models.specs import model_names
from agegender.provenance import git

STUDIES = "studies"
# Runs of trained models on sets from elsewhere: external/<set>/<run>/ (`agegender.external`),
# without a history; their provenance has an entry of this name.
EXTERNAL = "external"
HISTORY, METRICS, PREDICTIONS, PROVENANCE = (
    "history.csv",
    "metrics.json",
    "predictions.csv",
    "provenance.json",
)
# The provenance's entry naming the sha256 of the run's other files (runs written since).
FILES = "files_sha256"


@dataclass(frozen=True)
class RunResults:
    """One run's result files, read (``history`` is None for a peer)."""

    name: str
    history: pd.DataFrame | None
    metrics: dict
    predictions: pd.DataFrame
    provenance: dict

    @property
    def peer(self) -> bool:
        """True for an off-the-shelf peer (`agegender.peer`): tested, never trained here."""
        return "peer" in self.provenance

    @property
    def baseline(self) -> bool:
        """True for a trivial baseline (`agegender.baselines`): fitted constants, not trained."""
        return "baseline" in self.provenance

    @property
    def trained(self) -> bool:
        return not (self.peer or self.baseline)


def write_run(
    folder: Path,
    *,
    predictions: pd.DataFrame,
    metrics: dict,
    provenance: dict,
    history: pd.DataFrame | None = None,
) -> Path:
    """Write one run's files as one unit (`agegender.files.replacing_folder`), the provenance
    naming the others' sha256; returns the folder."""
    texts = {PREDICTIONS: predictions.to_csv(index=False), METRICS: _json(metrics)}
    if history is not None:
        texts[HISTORY] = history.to_csv(index=False)
    digests = {name: hashlib.sha256(text.encode()).hexdigest() for name, text in texts.items()}
    texts[PROVENANCE] = _json({**provenance, FILES: digests})
    with replacing_folder(Path(folder)) as tmp:
        for name, text in texts.items():
            (tmp / name).write_bytes(text.encode())  # the bytes the digests were taken of
    return folder


# What replaces the runs that the comparison chapter writes (the baseline's and the peer's).
COMPARISON_COMMAND = "agegender run {} --only comparison"
# The entries of a provenance that mark a run with no training history: an off-the-shelf peer's,
# a baseline's, a trained model's on a set from elsewhere, the crop geometry measured with one
# (`agegender.using`).
WITHOUT_HISTORY = ("peer", "baseline", EXTERNAL, "crop_geometry")
# Set to 1 to replace a published run's results (`agegender run` and `agegender study` set it).
OVERWRITE = "AGEGENDER_OVERWRITE"


def published(folder: Path) -> bool:
    """Whether a results folder is published: git tracks files in it (False where git, or a
    repository holding the folder, is missing)."""
    folder = Path(folder).resolve()
    existing = next((p for p in (folder, *folder.parents) if p.is_dir()), None)
    if existing is None:
        return False
    listed = git("ls-files", "--", str(folder), cwd=existing)
    return bool(listed and listed.strip())


def check_replaceable(folder: Path, *, profile: str, run: str, command: str | None = None) -> None:
    """Refuse, before any work, to replace a published run's results unless asked to: by
    `agegender run` or `agegender study` (which set ``AGEGENDER_OVERWRITE=1``) or by that
    variable set by hand.

    Args:
        folder: the run's results folder.
        profile, run: its profile and run name (``studies/<study>/<variant>`` for a study's).
        command: the command that replaces it, when not its model chapter's or its study's
            (the baseline and the peer are the comparison chapter's).

    Raises:
        AgegenderError: the folder is published and replacing it was not asked for, saying how
            to ask or how to run privately.
    """
    if os.environ.get(OVERWRITE) == "1" or not published(folder):
        return
    trained = command is None
    if command is None and run.startswith(f"{STUDIES}/"):
        command = f"agegender study {profile} --only {run.split('/')[1]}"
    elif command is None:
        command = f"agegender run {profile} --only {run}"
    raise AgegenderError(
        f"{folder} holds the published results of profile {profile!r} (git tracks them), and "
        "this run would replace them"
        + (" and the trained model in its work folder" if trained else "")
        + f". To replace them, run `{command}`. For a run of your own, choose another profile "
        f"name (e.g. profile={profile + '-mine'!r}), which writes results/{profile}-mine/ "
        f"instead. Or set {OVERWRITE}=1 in the environment to replace them from here."
    )


@contextlib.contextmanager
def replacing_published():
    """Allow, inside the block, replacing published results (`check_replaceable`); processes
    started inside it (papermill's kernels) inherit the permission."""
    previous = os.environ.get(OVERWRITE)
    os.environ[OVERWRITE] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(OVERWRITE, None)
        else:
            os.environ[OVERWRITE] = previous


def _json(payload: dict) -> str:
    return json.dumps(evaluation.to_json_ready(payload), indent=2, sort_keys=True) + "\n"


def written_with(folder: Path, fingerprint: str) -> bool:
    """Whether the folder holds a complete run whose provenance has this ``fingerprint`` (of
    everything its numbers depend on), so that it need not be made again."""
    record = provenance_of(folder)
    return record is not None and record.get("fingerprint") == fingerprint


def provenance_of(folder: Path) -> dict | None:
    """A complete run's provenance (None when the folder holds no complete run)."""
    needed = (METRICS, PREDICTIONS, PROVENANCE)
    if not all((folder / name).is_file() for name in needed):
        return None
    return json.loads((folder / PROVENANCE).read_text())


def load(folder: Path) -> RunResults:
    """Read one run's folder; a peer's has no ``history.csv``.

    Raises:
        AgegenderError: a file is missing, or does not belong with the provenance, naming it and
            what to run.
    """
    record = provenance_of(folder)
    trained = record is None or not (set(WITHOUT_HISTORY) & set(record))
    needed = (HISTORY, METRICS, PREDICTIONS, PROVENANCE) if trained else (METRICS, PREDICTIONS)
    missing = [name for name in needed if not (folder / name).is_file()]
    if missing:
        raise AgegenderError(f"{folder} lacks {missing}: run its chapter first.")
    _check_together(folder, record or {})
    return RunResults(
        name=folder.name,
        history=pd.read_csv(folder / HISTORY) if trained else None,
        metrics=json.loads((folder / METRICS).read_text()),
        predictions=pd.read_csv(folder / PREDICTIONS),
        provenance=record,
    )


def _check_together(folder: Path, record: dict) -> None:
    """Refuse files whose sha256 differs from the one the provenance names (runs written before
    the provenance named them are not checked)."""
    mixed = [
        name
        for name, digest in record.get(FILES, {}).items()
        if file_sha256(folder / name) != digest
    ]
    if mixed:
        raise AgegenderError(
            f"{folder}: {mixed} do not belong with its {PROVENANCE} (they come from another run "
            "or were edited): run its chapter again."
        )


def load_models(profile: str, paths: Paths | None = None) -> dict[str, RunResults]:
    """Every model's results of one profile, in the table's order (absent ones left out).

    Raises:
        AgegenderError: no model has results for the profile.
    """
    paths = paths or Paths.default()
    folders = [paths.run_results(profile, name) for name in model_names()]
    found = {folder.name: load(folder) for folder in folders if folder.is_dir()}
    if not found:
        raise AgegenderError(
            f"No results in {paths.profile_results(profile)}: run `agegender run {profile}` first."
        )
    return found


def load_peers(profile: str, paths: Paths | None = None) -> dict[str, RunResults]:
    """The off-the-shelf peers' results of one profile, by folder name (none: an empty dict).

    Raises:
        AgegenderError: a folder beside the models' that is not a complete run.
    """
    return _beside_models(profile, paths, "peer")


def load_baselines(profile: str, paths: Paths | None = None) -> dict[str, RunResults]:
    """The trivial baselines' results of one profile, by folder name (none: an empty dict)."""
    return _beside_models(profile, paths, "baseline")


def _beside_models(profile: str, paths: Paths | None, kind: str) -> dict[str, RunResults]:
    """The runs of one kind among the profile's folders that are not models (each folder's
    provenance says its kind; only the runs asked for are read)."""
    folder = (paths or Paths.default()).profile_results(profile)
    if not folder.is_dir():
        return {}
    found = {}
    for candidate in sorted(folder.iterdir()):
        hidden = candidate.name.startswith(".")  # a folder being written
        skipped = (*model_names(), STUDIES, EXTERNAL)
        if hidden or not candidate.is_dir() or candidate.name in skipped:
            continue
        record = provenance_of(candidate)
        if record is None or kind in record:
            found[candidate.name] = load(candidate)  # an incomplete folder: says what it lacks
    return found


def load_external(profile: str, paths: Paths | None = None) -> dict[tuple[str, str], RunResults]:
    """The runs on sets from elsewhere of one profile (`agegender.external`), by (set, run): by
    set, the models' runs before the peers', each in name order (none: an empty dict)."""
    folder = (paths or Paths.default()).profile_results(profile) / EXTERNAL
    found = {}
    for record in sorted(folder.glob(f"*/**/{PROVENANCE}")):
        run = record.parent
        if not any(part.startswith(".") for part in run.relative_to(folder).parts):
            name, *rest = run.relative_to(folder).parts
            found[(name, "/".join(rest))] = load(run)
    return dict(sorted(found.items(), key=lambda item: (item[0][0], item[1].peer, item[0][1])))


def load_study(profile: str, study: str, variants, paths: Paths | None = None) -> dict:
    """The finished runs of one study's variants, in the order given (absent ones left out)."""
    folder = (paths or Paths.default()).profile_results(profile) / STUDIES / study
    return {name: load(folder / name) for name in variants if (folder / name).is_dir()}


CHAPTER_TIMES = "chapter_times.json"


def load_chapter_times(profile: str, paths: Paths | None = None) -> dict:
    """Each chapter's last wall time under a profile (`agegender.runner.record_time`)."""
    path = (paths or Paths.default()).profile_results(profile) / CHAPTER_TIMES
    return json.loads(path.read_text()) if path.is_file() else {}
