"""Trivial baselines: what a model must beat to have learnt anything from the faces.

The constant baseline predicts, for every face, the median age of the training split and, as the
probability of "female", the training split's share of women (so its gender label is the
majority's). It is fitted on the committed split's training rows, tested on exactly the models'
test rows with the same code (`agegender.evaluation`), and written like a model's run, less the
history (`agegender.results.store`)::

    results/<profile>/baseline_constant/    metrics.json, predictions.csv, provenance.json
"""

from __future__ import annotations

import time

import numpy as np

from agegender import evaluation, provenance
from agegender.data.dataset import UTKFace
from agegender.data.manifest import dataset_fingerprint
from agegender.files import file_sha256, rows_sha256
from agegender.results import store

NAME = "baseline_constant"
DESCRIPTION = "constant: the training split's median age and share of women"


def fit_constant(train) -> dict:
    """The constants of the baseline from the training rows' labels (``age``, ``gender``)."""
    return {
        "age": float(np.median(train["age"])),
        "female_share": float(np.mean(train["gender"])),
        "fitted_on_images": len(train),
    }


def fit_on_utkface(data: UTKFace) -> dict:
    """`fit_constant` on every row of the committed split's training images."""
    return fit_constant(data.split.iloc[data.rows("train")])


def evaluate_on_utkface(
    data: UTKFace,
    *,
    profile: str,
    max_eval_images: int | None = None,
    seed: int = 0,
    bootstrap_resamples: int = 1000,
):
    """Fit the constant baseline on every training row, test it on the models' test rows
    (``data.rows("test", max_eval_images, seed)``) and write its results.

    Returns:
        The results folder, ``results/<profile>/baseline_constant/``.

    Raises:
        AgegenderError: the profile's results are published and replacing them was not asked
            for (`agegender.results.store.check_replaceable`).
    """
    started = time.time()
    folder = data.paths.run_results(profile, NAME)
    store.check_replaceable(
        folder, profile=profile, run=NAME, command=store.COMPARISON_COMMAND.format(profile)
    )
    rows = data.rows("test", max_eval_images, seed)
    test = data.split.iloc[rows]
    constants = fit_on_utkface(data)
    table = evaluation.predictions_table(
        test["file"],
        test["age"],
        np.full(len(test), constants["age"]),
        test["gender"],
        np.full(len(test), constants["female_share"]),
    )
    parameters = {
        "model": NAME,
        "max_eval_images": max_eval_images,
        "seed": seed,
        "bootstrap_resamples": bootstrap_resamples,
        "data": {"test": {"images": len(rows), "rows_sha256": rows_sha256(rows)}},
    }
    record = provenance.collect(
        profile=profile,
        parameters=parameters,
        started=started,
        dataset_sha256=dataset_fingerprint(data.manifest),
        split_sha256=file_sha256(data.paths.split_file),
        weights=DESCRIPTION,
    )
    record["baseline"] = {"kind": "constant", **constants}
    summary = evaluation.summarize(table, resamples=bootstrap_resamples, seed=seed)
    return store.write_run(folder, predictions=table, metrics=summary, provenance=record)
