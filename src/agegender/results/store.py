"""The results folder, ``results/<profile>/<run>/``: its layout, how it is written, how it is read.

One folder per run (a model of `agegender.models.specs`, an off-the-shelf peer or a baseline;
a study's runs, `agegender.studies`, in ``results/<profile>/studies/<study>/<variant>/``)::

    history.csv       one row per epoch, no gaps, no repeats (trained models only)
    metrics.json      test metrics with bootstrap intervals, per group (`evaluation.summarize`)
    predictions.csv   one row per test image
    provenance.json   data, parameters, weights, seed, backend, devices, versions, commit, time

`write_run` writes the provenance last, so a folder with a provenance is complete. Nothing here
imports Keras: the comparison chapter reads results without loading a backend.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from agegender import evaluation
from agegender.config import Paths
from agegender.errors import AgegenderError
from agegender.files import write_json_atomic, write_text_atomic
from agegender.models.specs import model_names

STUDIES = "studies"
HISTORY, METRICS, PREDICTIONS, PROVENANCE = (
    "history.csv",
    "metrics.json",
    "predictions.csv",
    "provenance.json",
)


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
    """Write one run's files atomically, the provenance last; returns the folder."""
    if history is not None:
        write_text_atomic(folder / HISTORY, history.to_csv(index=False))
    write_text_atomic(folder / PREDICTIONS, predictions.to_csv(index=False))
    write_json_atomic(folder / METRICS, evaluation.to_json_ready(metrics))
    write_json_atomic(folder / PROVENANCE, evaluation.to_json_ready(provenance))
    return folder


def provenance_of(folder: Path) -> dict | None:
    """A complete run's provenance (None when the folder holds no complete run)."""
    needed = (METRICS, PREDICTIONS, PROVENANCE)
    if not all((folder / name).is_file() for name in needed):
        return None
    return json.loads((folder / PROVENANCE).read_text())


def load(folder: Path) -> RunResults:
    """Read one run's folder; a peer's has no ``history.csv``.

    Raises:
        AgegenderError: a file is missing, naming it and what to run.
    """
    record = provenance_of(folder)
    trained = record is None or not ({"peer", "baseline"} & set(record))
    needed = (HISTORY, METRICS, PREDICTIONS, PROVENANCE) if trained else (METRICS, PREDICTIONS)
    missing = [name for name in needed if not (folder / name).is_file()]
    if missing:
        raise AgegenderError(f"{folder} lacks {missing}: run its chapter first.")
    return RunResults(
        name=folder.name,
        history=pd.read_csv(folder / HISTORY) if trained else None,
        metrics=json.loads((folder / METRICS).read_text()),
        predictions=pd.read_csv(folder / PREDICTIONS),
        provenance=record,
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
        if not candidate.is_dir() or candidate.name in (*model_names(), STUDIES):
            continue
        record = provenance_of(candidate)
        if record is None or kind in record:
            found[candidate.name] = load(candidate)  # an incomplete folder: says what it lacks
    return found


def load_study(profile: str, study: str, variants, paths: Paths | None = None) -> dict:
    """The finished runs of one study's variants, in the order given (absent ones left out)."""
    folder = (paths or Paths.default()).profile_results(profile) / STUDIES / study
    return {name: load(folder / name) for name in variants if (folder / name).is_dir()}


CHAPTER_TIMES = "chapter_times.json"


def load_chapter_times(profile: str, paths: Paths | None = None) -> dict:
    """Each chapter's last wall time under a profile (`agegender.runner.record_time`)."""
    path = (paths or Paths.default()).profile_results(profile) / CHAPTER_TIMES
    return json.loads(path.read_text()) if path.is_file() else {}
