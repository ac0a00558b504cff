"""What the studies' runs say (`agegender.studies`): the recipe's selection, the spread over
seeds, what more data buys, and how long each model takes to reach an accuracy. Keras-free.

The recipe's decisions follow one stated rule (`keeps`), so the chosen recipe is made from the
results, not typed: a variant is kept when it beats the reference on the validation split by more
than `MAE_STEP` years without losing more than `ACCURACY_STEP` of gender accuracy, or gains more
than `ACCURACY_STEP` of accuracy without losing more than `MAE_STEP` years.
"""

from __future__ import annotations

import math

import pandas as pd

from agegender.results.store import RunResults
from agegender.results.tables import DIGITS, styled, training_seconds

MAE_STEP = 0.1  # years
ACCURACY_STEP = 0.005
REFERENCE = "reference"
THRESHOLDS = (9.0, 7.0, 6.5)  # validation age MAE, years


def _scores(run: RunResults) -> tuple[float, float]:
    overall = run.metrics["overall"]
    return overall["age_mae"], overall["gender_accuracy"]


def keeps(variant: RunResults, reference: RunResults) -> bool:
    """Whether `variant` is better than `reference` by the module's rule."""
    (mae, accuracy), (mae_0, accuracy_0) = _scores(variant), _scores(reference)
    better_age = mae < mae_0 - MAE_STEP and accuracy >= accuracy_0 - ACCURACY_STEP
    better_gender = accuracy > accuracy_0 + ACCURACY_STEP and mae <= mae_0 + MAE_STEP
    return better_age or better_gender


def decisions(variants: dict[str, dict], runs: dict[str, RunResults]) -> dict[str, str]:
    """Per variant: ``reference``, ``kept``, ``dropped`` or ``not run``."""
    reference = runs.get(REFERENCE)
    found = {}
    for name in variants:
        if name == REFERENCE:
            found[name] = REFERENCE
        elif name not in runs or reference is None:
            found[name] = "not run"
        else:
            found[name] = "kept" if keeps(runs[name], reference) else "dropped"
    return found


def chosen_recipe(variants: dict[str, dict], runs: dict[str, RunResults]) -> dict:
    """The reference's settings with every kept variant's changes (where two kept variants set
    the same setting, the one with the lower validation MAE wins)."""
    verdicts = decisions(variants, runs)
    kept = sorted(
        (name for name, verdict in verdicts.items() if verdict == "kept"),
        key=lambda name: -_scores(runs[name])[0],
    )
    recipe = dict(variants.get(REFERENCE, {}))
    for name in kept:  # the best last, so it wins a shared setting
        recipe |= variants[name]
    return recipe


def recipe_table(variants: dict[str, dict], runs: dict[str, RunResults]) -> pd.DataFrame:
    """One row per variant: what it changes, its validation scores and their change from the
    reference, its epochs and training time, and the decision."""
    verdicts = decisions(variants, runs)
    reference = runs.get(REFERENCE)
    rows = {}
    for name, changes in variants.items():
        run = runs.get(name)
        row = {"changes": _changes(changes) or "(the reference)", "decision": verdicts[name]}
        if run is not None:
            mae, accuracy = _scores(run)
            row |= {
                "val age MAE": f"{mae:.2f}",
                "val gender accuracy": f"{accuracy:.3f}",
                "epochs (best)": _epochs(run),
                "training time (min)": f"{training_seconds(run.provenance) / 60:.1f}",
            }
            if reference is not None and name != REFERENCE:
                mae_0, accuracy_0 = _scores(reference)
                row |= {
                    "Δ MAE": f"{mae - mae_0:+.2f}",
                    "Δ accuracy": f"{accuracy - accuracy_0:+.3f}",
                }
        rows[name] = row
    columns = [
        "changes",
        "val age MAE",
        "Δ MAE",
        "val gender accuracy",
        "Δ accuracy",
        "epochs (best)",
        "training time (min)",
        "decision",
    ]
    table = pd.DataFrame(rows).T.reindex(columns=columns).fillna("")
    return table.rename_axis(index=None, columns="variant")


def seed_spread(runs: dict[str, RunResults]) -> dict:
    """Mean and sample standard deviation over seeds of age MAE and gender accuracy."""
    maes, accuracies = zip(*(_scores(run) for run in runs.values()), strict=True)
    return {
        "seeds": len(runs),
        "images": _train_images(next(iter(runs.values()))),
        "age_mae": _mean_sd(maes),
        "gender_accuracy": _mean_sd(accuracies),
    }


def seed_table(runs: dict[str, RunResults]) -> pd.DataFrame:
    """One row per seed (scores with their bootstrap intervals), and the mean ± sd over seeds."""
    rows = {}
    for run in runs.values():
        intervals = run.metrics["confidence_intervals"]
        mae, accuracy = _scores(run)
        rows[f"seed {run.provenance['seed']}"] = {
            "age MAE [95% bootstrap CI]": _interval(mae, intervals["age_mae"], 2),
            "gender accuracy [95% bootstrap CI]": _interval(
                accuracy, intervals["gender_accuracy"], 3
            ),
            "epochs (best)": _epochs(run),
        }
    spread = seed_spread(runs)
    if len(runs) > 1:  # one seed has no spread
        rows["mean ± sd over seeds"] = {
            "age MAE [95% bootstrap CI]": "{:.2f} ± {:.2f}".format(*spread["age_mae"]),
            "gender accuracy [95% bootstrap CI]": "{:.3f} ± {:.3f}".format(
                *spread["gender_accuracy"]
            ),
            "epochs (best)": "",
        }
    return pd.DataFrame(rows).T.rename_axis(
        index=None, columns=f"{spread['images']:,} training images"
    )


def data_size_table(runs: dict[str, RunResults]) -> pd.DataFrame:
    """Scores by number of training images, smallest first: the mean over the runs of each size
    (several seeds) with their standard deviation (NaN for a single run). The data behind
    `data_size_view` and `agegender.plots.data_size_curve`."""
    rows = pd.DataFrame(
        [
            {
                "training images": _train_images(run),
                "age MAE": _scores(run)[0],
                "gender accuracy": _scores(run)[1],
                "training time (min)": training_seconds(run.provenance) / 60,
                "split": run.metrics.get("split", "test"),
            }
            for run in runs.values()
        ]
    )
    grouped = rows.groupby(["training images", "split"], as_index=False)
    table = grouped.agg(
        runs=("age MAE", "size"),
        **{
            "age MAE": ("age MAE", "mean"),
            "age MAE sd": ("age MAE", "std"),
            "gender accuracy": ("gender accuracy", "mean"),
            "gender accuracy sd": ("gender accuracy", "std"),
            "training time (min)": ("training time (min)", "mean"),
        },
    )
    return table.round(
        {
            "age MAE": 2,
            "age MAE sd": 2,
            "gender accuracy": 3,
            "gender accuracy sd": 3,
            "training time (min)": 1,
        }
    ).sort_values("training images", ignore_index=True)


def data_size_view(table):
    """`data_size_table` as the book shows it: a row per number of training images, each score
    as its mean ± sd over the point's runs (the mean alone for a single run), titled with the
    split. A sentence (no results yet) is given back as it is."""
    if isinstance(table, str):
        return table
    split = "validation" if set(table["split"]) == {"val"} else "test"
    rows = {}
    for _, point in table.iterrows():
        rows[f"{point['training images']:,}"] = {
            "runs": int(point["runs"]),
            f"{split} age MAE (years)": _mean_sd_text(point, "age MAE", DIGITS["age_mae"]),
            f"{split} gender accuracy": _mean_sd_text(
                point, "gender accuracy", DIGITS["gender_accuracy"]
            ),
            "training time (min)": f"{point['training time (min)']:.1f}",
        }
    caption = (
        "Scores by number of training images (mean ± sd over a point's runs; a point with one "
        "run shows its score alone)"
    )
    view = pd.DataFrame(rows).T.rename_axis(columns="training images")
    return styled(view, caption, "data_size")


def _mean_sd_text(point: pd.Series, column: str, digits: int) -> str:
    sd = point[f"{column} sd"]
    mean = f"{point[column]:.{digits}f}"
    return mean if pd.isna(sd) else f"{mean}\u00a0±\u00a0{sd:.{digits}f}"


def time_to_accuracy(runs: dict[str, RunResults], thresholds=THRESHOLDS) -> pd.DataFrame:
    """Minutes of training each model needed to first reach each validation age MAE, from its
    own history (every epoch of every invocation, plus a feature model's one-off extraction);
    "not reached" where it never did."""
    rows = {}
    for name, run in runs.items():
        if run.history is None or "val_age_mae" not in run.history:
            continue
        history = run.history.sort_values("epoch")
        spent = history["epoch_time_s"].cumsum() + (run.provenance.get("feature_extraction_s") or 0)
        row = {}
        for threshold in thresholds:
            reached = history["val_age_mae"] <= threshold
            row[f"val MAE ≤ {threshold:g}"] = (
                f"{spent[reached].iloc[0] / 60:.1f} (epoch {history['epoch'][reached].iloc[0] + 1})"
                if reached.any()
                else "not reached"
            )
        row["best val MAE"] = f"{history['val_age_mae'].min():.2f}"
        rows[name] = row
    return pd.DataFrame(rows).T.rename_axis(index=None, columns="minutes of training (epoch)")


def _changes(changes: dict) -> str:
    return ", ".join(f"{key}={value}" for key, value in changes.items())


def _epochs(run: RunResults) -> str:
    best = run.metrics.get("best_epoch")
    return f"{run.provenance['epochs_run']}" + ("" if best is None else f" ({best + 1})")


def _train_images(run: RunResults) -> int:
    return run.provenance["parameters"]["data"]["train"]["images"]


def _interval(value: float, ci: dict, digits: int) -> str:
    return f"{value:.{digits}f} [{ci['low']:.{digits}f}, {ci['high']:.{digits}f}]"


def _mean_sd(values) -> tuple[float, float]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, math.nan
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
