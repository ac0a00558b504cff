"""Test-split metrics from a predictions table: overall, per group, with bootstrap intervals.

A predictions table has one row per image: ``file``, ``age_true``, ``age_pred``, ``gender_true``
(0 male, 1 female; NaN where a set from elsewhere does not say, `agegender.external`),
``gender_pred`` and ``gender_prob`` (probability of female); `predictions_table` makes one. The
gender metrics are taken over the rows whose gender is known. Everything here is numpy and pandas
only (no scikit-learn); ROC AUC is the Mann-Whitney rank statistic.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from agegender.data.labels import AGE_BANDS, GENDERS, RACES, InvalidName, age_band, parse_name

CS_YEARS = 5
METRICS = ("age_mae", "age_rmse", "age_cs5", "age_mean_error", "gender_accuracy", "gender_auc")
GROUPINGS = ("age_band", "race", "gender")
COLUMNS = ("file", "age_true", "age_pred", "gender_true", "gender_pred", "gender_prob")
UNKNOWN = "unknown"  # the group of a race or gender a table does not know


def predictions_table(
    files, age_true, age_pred, gender_true, gender_prob, *, threshold: float = 0.5
) -> pd.DataFrame:
    """One row per image: true and predicted age and gender, and the gender probability.

    Args:
        files: file names (or None: the rows are numbered instead).
        age_true, age_pred: ages in years.
        gender_true: 0 (male) or 1 (female); None or NaN where it is not known.
        gender_prob: predicted probability of female; ``gender_pred`` is ``prob >= threshold``.
        threshold: decision threshold of the gender prediction.

    Returns:
        A DataFrame with the columns `COLUMNS`.
    """
    age_true = np.asarray(age_true, dtype=np.float64).reshape(-1)
    n = len(age_true)
    gender_prob = np.asarray(gender_prob, dtype=np.float64).reshape(-1)
    gender_true = pd.to_numeric(pd.Series(np.asarray(gender_true, dtype=object).reshape(-1)))
    return pd.DataFrame(
        {
            "file": np.arange(n).astype(str) if files is None else np.asarray(files).astype(str),
            "age_true": age_true,
            "age_pred": np.asarray(age_pred, dtype=np.float64).reshape(-1),
            "gender_true": gender_true.to_numpy(float if gender_true.isna().any() else int),
            "gender_pred": (gender_prob >= threshold).astype(int),
            "gender_prob": gender_prob,
        }
    )


# --- single metrics ----------------------------------------------------------------------------


def mae(true, pred) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(_errors(true, pred))))


def rmse(true, pred) -> float:
    """Root mean squared error."""
    return float(np.sqrt(np.mean(_errors(true, pred) ** 2)))


def cumulative_score(true, pred, years: float = CS_YEARS) -> float:
    """Share of predictions within `years` of the truth, inclusive (CS@5 for ``years=5``)."""
    return float(np.mean(np.abs(_errors(true, pred)) <= years))


def mean_error(true, pred) -> float:
    """Mean signed error, ``pred - true``: positive when the model guesses too old."""
    return float(np.mean(_errors(true, pred)))


def accuracy(true, pred) -> float:
    """Share of equal labels."""
    true, pred = np.asarray(true).reshape(-1), np.asarray(pred).reshape(-1)
    _check_same_length(true, pred)
    return float(np.mean(true == pred))


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve: the chance that a random positive scores above a random negative
    (ties count one half). NaN when only one class is present.
    """
    labels = np.asarray(labels).reshape(-1).astype(bool)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    _check_same_length(labels, scores)
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return math.nan
    rank_sum = average_ranks(scores)[labels].sum()
    return float((rank_sum - positives * (positives + 1) / 2) / (positives * negatives))


def average_ranks(values) -> np.ndarray:
    """1-based ranks of `values`, ties sharing the average of their ranks."""
    values = np.asarray(values).reshape(-1)
    order = np.argsort(values, kind="mergesort")
    _, first, counts = np.unique(values[order], return_index=True, return_counts=True)
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(first + (counts + 1) / 2, counts)
    return ranks


def _errors(true, pred) -> np.ndarray:
    true = np.asarray(true, dtype=np.float64).reshape(-1)
    pred = np.asarray(pred, dtype=np.float64).reshape(-1)
    _check_same_length(true, pred)
    return pred - true


def _check_same_length(a, b) -> None:
    if len(a) != len(b):
        raise ValueError(f"Both arrays must have the same length. Received: {len(a)} and {len(b)}")


# --- tables ------------------------------------------------------------------------------------


def metrics(table: pd.DataFrame) -> dict:
    """The headline metrics (`METRICS`) of a predictions table, and its size ``n``."""
    if table.empty:
        return {"n": 0, **dict.fromkeys(METRICS, math.nan)}
    true, pred = table["age_true"], table["age_pred"]
    known = table[table["gender_true"].notna()]
    return {
        "n": len(table),
        "age_mae": mae(true, pred),
        "age_rmse": rmse(true, pred),
        "age_cs5": cumulative_score(true, pred),
        "age_mean_error": mean_error(true, pred),
        "gender_accuracy": accuracy(known["gender_true"], known["gender_pred"])
        if len(known)
        else math.nan,
        "gender_auc": roc_auc(known["gender_true"], known["gender_prob"]),
    }


def with_groups(table: pd.DataFrame) -> pd.DataFrame:
    """The table with the group columns ``age_band``, ``race`` and ``gender`` (names).

    ``race`` is kept when the table has it (a name, or a label 0-4), otherwise read from UTKFace
    file names; it is ``"unknown"`` where neither says, as ``gender`` is where it is not known.
    """
    table = table.copy()
    table["age_band"] = [age_band(int(age)) for age in table["age_true"]]
    table["gender"] = [UNKNOWN if math.isnan(g) else GENDERS[int(g)] for g in table["gender_true"]]
    races = table["race"] if "race" in table else table["file"].map(_race_from_name)
    table["race"] = [_race_name(race) for race in races]
    return table


def _race_from_name(name: str):
    try:
        return parse_name(name).race
    except InvalidName:
        return None


def _race_name(race) -> str:
    if race is None or (isinstance(race, float) and math.isnan(race)):
        return UNKNOWN
    if isinstance(race, str):
        return race
    return RACES[int(race)]


def metrics_by_group(table: pd.DataFrame, groupings=GROUPINGS) -> pd.DataFrame:
    """The headline metrics of each group, one row per group.

    Args:
        table: a predictions table.
        groupings: which group columns (see `with_groups`) to break down by.

    Returns:
        A DataFrame with the columns ``grouping``, ``group``, ``n`` and `METRICS`; age bands in
        `AGE_BANDS` order, races in `RACES` order, genders in `GENDERS` order. A metric that a
        group cannot have (AUC within one gender) is NaN.
    """
    for grouping in groupings:
        if grouping not in GROUPINGS:
            raise ValueError(f"groupings must be among {GROUPINGS}. Received: {grouping!r}")
    grouped = with_groups(table)
    rows = []
    for grouping in groupings:
        for group in _group_order(grouping, grouped[grouping]):
            members = grouped[grouped[grouping] == group]
            rows.append({"grouping": grouping, "group": group, **metrics(members)})
    return pd.DataFrame(rows, columns=["grouping", "group", "n", *METRICS])


def _group_order(grouping: str, values: pd.Series) -> list[str]:
    present = set(values)
    if grouping == "age_band":
        known = [age_band(low) for low, _ in AGE_BANDS]
    elif grouping == "race":
        known = [*RACES, UNKNOWN]
    else:
        known = [*GENDERS, UNKNOWN]
    return [group for group in known if group in present]


def bootstrap_ci(
    table: pd.DataFrame, *, resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> pd.DataFrame:
    """Percentile bootstrap confidence intervals of the headline metrics.

    Rows are resampled with replacement `resamples` times (seeded); each interval holds the
    central `confidence` share of the resampled values.

    Args:
        table: a predictions table.
        resamples: number of bootstrap resamples.
        confidence: coverage of the interval, e.g. 0.95.
        seed: seed of the resampling.

    Returns:
        A DataFrame with the columns ``metric``, ``value`` (on the whole table), ``low``,
        ``high``, one row per metric of `METRICS`.
    """
    if not isinstance(resamples, int) or resamples < 1:
        raise ValueError(f"resamples must be a positive integer. Received: {resamples=}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1. Received: {confidence=}")
    n = len(table)
    if n == 0:
        raise ValueError("Cannot bootstrap an empty predictions table.")
    indices = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    errors = (table["age_pred"].to_numpy(float) - table["age_true"].to_numpy(float))[indices]
    gender_true = table["gender_true"].to_numpy(float)
    known = ~np.isnan(gender_true)
    correct = (gender_true == table["gender_pred"].to_numpy())[indices]
    prob = table["gender_prob"].to_numpy(float)
    with np.errstate(invalid="ignore"):  # a resample without a known gender: NaN, left out
        accuracies = (correct & known[indices]).sum(axis=1) / known[indices].sum(axis=1)
    samples = {
        "age_mae": np.abs(errors).mean(axis=1),
        "age_rmse": np.sqrt((errors**2).mean(axis=1)),
        "age_cs5": (np.abs(errors) <= CS_YEARS).mean(axis=1),
        "age_mean_error": errors.mean(axis=1),
        "gender_accuracy": accuracies,
        "gender_auc": np.array(
            [roc_auc(gender_true[i][known[i]], prob[i][known[i]]) for i in indices]
        ),
    }
    point = metrics(table)
    tail = 100 * (1 - confidence) / 2
    rows = []
    for metric in METRICS:
        values = samples[metric][~np.isnan(samples[metric])]
        low, high = np.percentile(values, [tail, 100 - tail]) if len(values) else (np.nan,) * 2
        rows.append(
            {"metric": metric, "value": point[metric], "low": float(low), "high": float(high)}
        )
    return pd.DataFrame(rows, columns=["metric", "value", "low", "high"])


def summarize(
    table: pd.DataFrame, *, resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> dict:
    """Everything about a predictions table, JSON-ready (NaN becomes None).

    Returns:
        ``{"overall": {n, metrics...}, "confidence_intervals": {metric: {value, low, high}},
        "confidence": ..., "resamples": ..., "seed": ..., "by_group": [rows of
        `metrics_by_group`]}``.
    """
    intervals = bootstrap_ci(table, resamples=resamples, confidence=confidence, seed=seed)
    return to_json_ready(
        {
            "overall": metrics(table),
            "confidence": confidence,
            "resamples": resamples,
            "seed": seed,
            "confidence_intervals": {
                row.metric: {"value": row.value, "low": row.low, "high": row.high}
                for row in intervals.itertuples()
            },
            "by_group": metrics_by_group(table).to_dict(orient="records"),
        }
    )


def to_json_ready(value):
    """`value` with numpy scalars made plain and NaN/inf made None, recursively."""
    if isinstance(value, dict):
        return {str(key): to_json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_ready(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
