"""The book's tables, from runs read by `agegender.results.store` (the comparison never retrains).

Each takes runs by name (models and off-the-shelf peers alike, where it makes sense) and returns
a `pandas.DataFrame` or a sentence. Keras-free.
"""

from __future__ import annotations

import pandas as pd

from agegender.errors import AgegenderError
from agegender.evaluation import METRICS
from agegender.provenance import weights_words
from agegender.results.store import RunResults

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


def metrics_table(run: RunResults) -> pd.DataFrame:
    """Every test metric of one run with its 95% bootstrap interval, one row per metric."""
    intervals, overall = run.metrics["confidence_intervals"], run.metrics["overall"]
    rows = {}
    for m in METRICS:
        ci = intervals.get(m)
        rows[METRIC_LABELS[m]] = {
            "value": f"{overall[m]:.{DIGITS[m]}f}",
            "95% CI": f"[{ci['low']:.{DIGITS[m]}f}, {ci['high']:.{DIGITS[m]}f}]" if ci else "",
        }
    return pd.DataFrame(rows).T.rename_axis(
        index=None, columns=f"{run.name}, {overall['n']:,} test images"
    )


def check_same_test_images(runs: dict[str, RunResults]) -> None:
    """Refuse to compare runs that were tested on different images.

    Raises:
        AgegenderError: naming each run's test-image count and row checksum.
    """
    tested = {name: run.provenance["parameters"]["data"]["test"] for name, run in runs.items()}
    if len({t["rows_sha256"] for t in tested.values()}) > 1:
        listing = "; ".join(
            f"{name}: {t['images']} images ({t['rows_sha256'][:12]})" for name, t in tested.items()
        )
        raise AgegenderError(
            f"These runs were tested on different images, so they cannot be compared: {listing}. "
            "Run them again with the same profile (max_eval_images and seed)."
        )


HEADLINE = {
    "age_mae": "age MAE ± 95% CI",
    "age_cs5": "CS@5",
    "gender_accuracy": "gender accuracy ± 95% CI",
    "gender_auc": "gender AUC",
}


def headline_table(runs: dict[str, RunResults]) -> pd.DataFrame:
    """The test metrics a reader compares first, one row per run: ``value ± half-width``.

    Age MAE (years) and gender accuracy carry their 95% bootstrap intervals; CS@5 (share of ages
    within five years) and ROC AUC their value. The last column says what each run started from.
    Every run was tested on the same images (`check_same_test_images`; `protocol` says how many).
    """
    rows = {}
    for name, run in runs.items():
        intervals, overall = run.metrics["confidence_intervals"], run.metrics["overall"]
        rows[name] = {
            label: _with_interval(intervals[m], DIGITS[m])
            if "CI" in label
            else f"{overall[m]:.{DIGITS[m]}f}"
            for m, label in HEADLINE.items()
        }
        rows[name]["weights"] = weights_tag(run)
    return pd.DataFrame(rows).T.rename_axis(index=None, columns="model")


def group_table(runs: dict[str, RunResults], grouping: str, metric: str) -> pd.DataFrame:
    """One metric per run (rows) and group (columns: ``age_band``, ``race`` or ``gender``).

    Each column names its group and how many test images it holds, e.g. ``0-12 (n=502)``.
    """
    rows, sizes = {}, None
    for name, run in runs.items():
        groups = pd.DataFrame(run.metrics["by_group"])
        groups = groups[groups["grouping"] == grouping].set_index("group")
        rows[name] = groups[metric]
        sizes = groups["n"] if sizes is None else sizes
    table = pd.DataFrame(rows).T
    table.columns = [f"{group} (n={sizes[group]:,})" for group in table.columns]
    return table.rename_axis(grouping.replace("_", " "), axis="columns").rename_axis("model")


def cost_table(runs: dict[str, RunResults]) -> pd.DataFrame:
    """How each model was trained and what it cost: images, size, epochs, time, device.

    The training time adds up every epoch of every invocation of the run (a resumed run counts
    both parts), plus the one-time feature extraction of a feature model. Peers and baselines
    are left out: they are not trained here (`peer_table`).
    """
    rows = {}
    for name, run in runs.items():
        if not run.trained:
            continue
        record = run.provenance
        epochs = f"{record['epochs_run']}"
        if run.metrics.get("best_epoch") is not None:
            epochs += f" (best {run.metrics['best_epoch'] + 1})"
        rows[name] = {
            "training images": record["parameters"]["data"]["train"]["images"],
            "image size (px)": record["parameters"]["image_size"],
            "epochs": epochs,
            "training time (min)": round(training_seconds(record) / 60, 1),
            "backend, device": f"{record['backend']}, {record['devices'][0]}",
        }
    return pd.DataFrame(rows).T.rename_axis(index=None, columns="model")


def training_seconds(record: dict) -> float:
    """A run's training cost in seconds: its epochs plus any feature extraction.

    Runs recorded before epochs were timed give their last invocation's wall time instead.
    """
    if record.get("training_time_s") is None:
        return record["wall_time_s"]
    return record["training_time_s"] + (record.get("feature_extraction_s") or 0.0)


def peer_table(peers: dict[str, RunResults]) -> pd.DataFrame:
    """How each off-the-shelf peer ran: its face box, faces its detector found, and its speed."""
    rows = {}
    for name, run in peers.items():
        record, detection = run.provenance, run.metrics.get("detection")
        rows[name] = {
            "face box": FACE_BOXES[record["peer"]["mode"]],
            "faces found": f"{detection['rate']:.1%}" if detection else "(not detecting)",
            "test images": run.metrics["overall"]["n"],
            "images/s (1 CPU thread)": f"{record['images_per_s']:.1f}",
        }
    return pd.DataFrame(rows).T.rename_axis(index=None, columns="peer")


FACE_BOXES = {"detector": "its own detector", "whole_image": "the whole image"}


def protocol(runs: dict[str, RunResults]) -> str:
    """One sentence of how the numbers were made: training images, size, epochs, test images."""
    trained = {name: run.provenance for name, run in runs.items() if run.trained}
    setups = {
        (r["parameters"]["data"]["train"]["images"], r["parameters"]["image_size"])
        for r in trained.values()
    }
    if len(setups) == 1:
        ((images, size),) = setups
        epochs = ", ".join(f"{name} {r['epochs_run']}" for name, r in trained.items())
        parts = [f"models trained on {images:,} images at {size} px (epochs: {epochs})"]
    else:
        parts = [
            f"{name} trained on {r['parameters']['data']['train']['images']:,} images at "
            f"{r['parameters']['image_size']} px for {r['epochs_run']} epochs"
            for name, r in trained.items()
        ]
    parts += _untrained_parts(runs.values())
    tested = " and ".join(
        f"{n:,}" for n in sorted({r.metrics["overall"]["n"] for r in runs.values()})
    )
    return f"Protocol: {'; '.join(parts)}; all tested on the same {tested} test images."


def _untrained_parts(runs) -> list[str]:
    parts = []
    if any(run.peer for run in runs):
        parts.append("the off-the-shelf peer not trained here")
    if any(run.baseline for run in runs):
        parts.append("the constant baseline fitted on the training split's labels")
    return parts


def _with_interval(ci: dict, digits: int) -> str:
    """``value ± half-width`` of a 95 % interval, joined by no-break spaces so that a table cell
    never wraps (bootstrap intervals are nearly symmetric; the bounds are in metrics.json)."""
    half = (ci["high"] - ci["low"]) / 2
    return f"{ci['value']:.{digits}f}\u00a0±\u00a0{half:.{digits}f}"


def weights_caption(runs: dict[str, RunResults]) -> str:
    """One sentence naming each run's starting weights, flagging non-transfer runs."""
    entries = [f"{n}: {weights_words(n, r.provenance)[1]}" for n, r in runs.items()]
    return "Starting weights: " + "; ".join(entries) + "."


def weights_tag(run: RunResults) -> str:
    """A table-cell version of `weights_caption`'s entry for one run."""
    return weights_words(run.name, run.provenance)[0]


def chapter_times_table(times: dict) -> pd.DataFrame:
    """Minutes per chapter of the last execution under a profile, with their sum and commits."""
    rows = {
        chapter: {
            "minutes": round(entry["seconds"] / 60, 1),
            "commit": (entry.get("git_commit") or "")[:10] + ("+" * bool(entry.get("git_dirty"))),
            "finished": entry["finished_at"],
        }
        for chapter, entry in times.items()
    }
    total = round(sum(entry["seconds"] for entry in times.values()) / 60, 1)
    rows["all chapters"] = {"minutes": total, "commit": "", "finished": ""}
    return pd.DataFrame(rows).T.rename_axis(index=None, columns="chapter")
