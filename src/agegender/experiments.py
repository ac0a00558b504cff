"""One model on UTKFace under a profile: loaders from the split, results in the standard places.

This is what each model chapter calls; it keeps the chapters free of loading and path logic::

    results/<profile>/<model>/          history.csv, metrics.json, predictions.csv, provenance.json
    data/work/<profile>/<model>/        models, training state (never committed)
    data/cache/features/                VGG16 features, computed once per size and weights
"""

from __future__ import annotations

from agegender.data.dataset import UTKFace
from agegender.data.manifest import dataset_fingerprint
from agegender.files import file_sha256
from agegender.training import Experiment, TrainingConfig, run_experiment


def train_on_utkface(
    data: UTKFace,
    name: str,
    *,
    profile: str,
    image_size: int,
    color: str = "rgb",
    batch_size: int = 64,
    max_train_images: int | None = None,
    max_eval_images: int | None = None,
    config: TrainingConfig | None = None,
    model_options: dict | None = None,
    fresh: bool = False,
) -> Experiment:
    """Train and test one model on the committed split, and write its results.

    Args:
        data: the prepared dataset (`agegender.data.dataset.prepare`).
        name: a model name (`agegender.models.MODEL_NAMES`).
        profile: the profile the run belongs to; names the results folder.
        image_size: image side in pixels.
        color: ``"rgb"`` or ``"grey"``.
        batch_size: images per batch.
        max_train_images: a fixed subset of the training images (None: all).
        max_eval_images: a fixed subset of the validation and test images (None: all).
        config: how to train (`TrainingConfig`).
        model_options: the builder's options (e.g. ``weights``, ``age_head``, ``augmentation``).
        fresh: start over instead of resuming an interrupted run.

    Returns:
        The `Experiment`; its files are in ``results/<profile>/<name>/``.
    """
    config = config or TrainingConfig()
    loaders = {
        which: data.batches(
            which,
            size=image_size,
            color=color,
            batch_size=batch_size,
            max_images=max_train_images if which == "train" else max_eval_images,
            seed=config.seed,
        )
        for which in ("train", "val", "test")
    }
    return run_experiment(
        name,
        loaders["train"],
        loaders["val"],
        loaders["test"],
        results_dir=data.paths.results / profile / name,
        work_dir=data.paths.data / "work" / profile / name,
        feature_cache_dir=data.paths.cache / "features",
        config=config,
        model_options=model_options,
        provenance={
            "profile": profile,
            "dataset_sha256": dataset_fingerprint(data.manifest),
            "split_sha256": file_sha256(data.paths.split_file),
        },
        fresh=fresh,
    )
