"""Read what runs wrote to ``results/<profile>/<model>/`` (the comparison never retrains)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from agegender.errors import AgegenderError
from agegender.evaluation import METRICS
from agegender.models import MODEL_NAMES
from agegender.provenance import weights_label

FILES = ("history.csv", "metrics.json", "predictions.csv", "provenance.json")
METRIC_LABELS = {
    "age_mae": "age MAE (years)",
    "age_rmse": "age RMSE (years)",
    "age_cs5": "CS@5 (share within 5 years)",
    "age_mean_error": "age mean error (years)",
    "gender_accuracy": "gender accuracy",
    "gender_auc": "gender ROC AUC",
}

DIGITS = {
    "age_mae": 2,
    "age_rmse": 2,
    "age_cs5": 3,
    "age_mean_error": 2,
    "gender_accuracy": 3,
    "gender_auc": 3,
}


@dataclass(frozen=True)
class ModelResults:
    """One model's run: its four result files, read."""

    name: str
    history: pd.DataFrame
    metrics: dict
    predictions: pd.DataFrame
    provenance: dict

    @property
    def random_init(self) -> bool:
        """True when a transfer model ran without pretrained weights."""
        return self.name != "custom_cnn" and self.provenance["weights"]["kind"] == "none"


def load(folder: Path) -> ModelResults:
    """Read one model's results folder."""
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise AgegenderError(f"{folder} lacks {missing}: run its chapter first.")
    return ModelResults(
        name=folder.name,
        history=pd.read_csv(folder / "history.csv"),
        metrics=json.loads((folder / "metrics.json").read_text()),
        predictions=pd.read_csv(folder / "predictions.csv"),
        provenance=json.loads((folder / "provenance.json").read_text()),
    )


def load_profile(results: Path, profile: str) -> dict[str, ModelResults]:
    """Every model's results of one profile, in the book's model order (absent ones left out)."""
    folder = results / profile
    found = {name: load(folder / name) for name in MODEL_NAMES if (folder / name).is_dir()}
    if not found:
        raise AgegenderError(f"No results in {folder}: run `agegender run {profile}` first.")
    return found


def headline_table(runs: dict[str, ModelResults]) -> pd.DataFrame:
    """Test metrics with their 95% intervals, one row per model: ``value [low, high]``."""
    rows = {}
    for name, run in runs.items():
        intervals = run.metrics["confidence_intervals"]
        rows[name] = {
            METRIC_LABELS[m]: _with_interval(intervals[m], DIGITS[m])
            if m in intervals
            else f"{run.metrics['overall'][m]:.{DIGITS[m]}f}"
            for m in METRICS
        }
        rows[name]["test images"] = run.metrics["overall"]["n"]
        rows[name]["starting weights"] = _weights_text(run)
    return pd.DataFrame(rows).T.rename_axis("model")


def group_table(runs: dict[str, ModelResults], grouping: str, metric: str) -> pd.DataFrame:
    """One metric per group (``age_band``, ``race`` or ``gender``) and model."""
    columns, sizes = {}, None
    for name, run in runs.items():
        groups = pd.DataFrame(run.metrics["by_group"])
        groups = groups[groups["grouping"] == grouping].set_index("group")
        columns[name] = groups[metric]
        sizes = groups["n"] if sizes is None else sizes
    columns["test images"] = sizes
    return pd.DataFrame(columns).rename_axis(grouping.replace("_", " "))


def cost_table(runs: dict[str, ModelResults]) -> pd.DataFrame:
    """Training cost of each model: wall time, epochs, parameters, weights, device."""
    rows = {}
    for name, run in runs.items():
        record = run.provenance
        rows[name] = {
            "wall time (min)": round(record["wall_time_s"] / 60, 1),
            "epochs": record["epochs_run"],
            "image size": record["parameters"]["image_size"],
            "training images": record["parameters"]["data"]["train"]["images"],
            "weights": weights_label(record["weights"]),
            "backend, device": f"{record['backend']}, {record['devices'][0]}",
        }
    return pd.DataFrame(rows).T.rename_axis("model")


def _with_interval(ci: dict, digits: int) -> str:
    return f"{ci['value']:.{digits}f} [{ci['low']:.{digits}f}, {ci['high']:.{digits}f}]"


def weights_caption(runs: dict[str, ModelResults]) -> str:
    """One sentence naming each model's starting weights, flagging non-transfer runs."""
    return (
        "Starting weights: " + "; ".join(f"{n}: {_weights_text(r)}" for n, r in runs.items()) + "."
    )


def _weights_text(run: ModelResults) -> str:
    if run.name == "custom_cnn" and run.provenance["weights"]["kind"] == "none":
        return "trained from scratch"
    label = weights_label(run.provenance["weights"])
    return f"{label} (not transfer learning)" if run.random_init else label
