"""One model on UTKFace under a profile: loaders from the committed split, results in place.

What each model chapter calls, with its parameters as they are::

    results/<profile>/<model>/          the run's results (`agegender.results.store`)
    data/work/<profile>/<model>/        models, training state (never committed)
    data/cache/features/                features of frozen extractors, computed once
"""

from __future__ import annotations

import dataclasses
import inspect

from agegender.checks import check_choice, check_positive_int
from agegender.config import Paths
from agegender.data.cache import COLORS
from agegender.data.dataset import UTKFace
from agegender.data.manifest import dataset_fingerprint
from agegender.files import file_sha256
from agegender.models.layers import Augmentation
from agegender.models.specs import spec
from agegender.results import store
from agegender.training.config import TrainingConfig
from agegender.training.distribution import resolve as resolve_devices
from agegender.training.experiment import Experiment, run_experiment

# `train_on_utkface`'s own arguments that describe the loaders, not the training.
LOADER_SETTINGS = ("image_size", "color", "batch_size", "max_train_images", "max_eval_images")
# Builder arguments that are not settings: they come from the data or from the seed.
NOT_SETTINGS = ("image_size", "channels", "augmentation", "seed")


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
    augment: bool | None = None,
    run: str | None = None,
    evaluate_on: str = "test",
    fresh: bool = False,
    **settings,
) -> Experiment:
    """Train and test one model on the committed split, and write its results.

    Args:
        data: the prepared dataset (`agegender.data.dataset.prepare`).
        name: a model name (`agegender.models.specs.MODELS`).
        profile: the profile the run belongs to; names the results folder.
        image_size: image side in pixels.
        color: ``"rgb"`` or ``"grey"``.
        batch_size: images per batch on each device: with ``devices`` N, each step's global batch
            holds N times as many (`agegender.training.distribution`).
        max_train_images: a fixed subset of the training images (None: all).
        max_eval_images: a fixed subset of the validation and test images (None: all).
        augment: train with `Augmentation` (None: as the spec says, `ModelSpec.augments`).
        run: the run's folder under ``results/<profile>/`` (None: the model's name).
        evaluate_on: ``"test"``, or ``"val"`` for a selection run that never reads the test split.
        fresh: start over instead of resuming an interrupted run.
        **settings: `TrainingConfig` fields (``epochs``, ``learning_rate``, ``seed``,
            ``devices``, ...) and the builder's options (``weights``, ``width``, ``dropout``,
            ...), by name.

    Returns:
        The `Experiment`; its files are in ``results/<profile>/<run>/``.

    Raises:
        ValueError: a setting that is neither a `TrainingConfig` field nor a builder option.
        AgegenderError: more ``devices`` than the backend sees; refused before any work.
        AgegenderError: the run's results are published (tracked by git) and replacing them was
            not asked for (`agegender.results.store.check_replaceable`); refused before any work.
    """
    check_replaceable(getattr(data, "paths", None), profile, run or name)
    check_choice(evaluate_on=evaluate_on, choices=("test", "val"))
    config, options = split_settings(name, settings)
    devices = resolve_devices(config.devices).count  # refused here, before any work
    if augment is None:
        augment = spec(name).augments
    options["augmentation"] = Augmentation() if augment else None
    loaders = {
        which: data.batches(
            which,
            size=image_size,
            color=color,
            batch_size=batch_size * devices,
            max_images=max_train_images if which == "train" else max_eval_images,
            seed=config.seed,
            multiple_of=devices,
        )
        for which in ("train", "val", "test")
        if which != "test" or evaluate_on == "test"
    }
    return run_experiment(
        name,
        loaders["train"],
        loaders["val"],
        loaders.get("test"),
        results_dir=data.paths.run_results(profile, run or name),
        work_dir=data.paths.run_work(profile, run or name),
        feature_cache_dir=data.paths.features,
        config=config,
        model_options=options,
        provenance={
            "profile": profile,
            "dataset_sha256": dataset_fingerprint(data.manifest),
            "split_sha256": file_sha256(data.paths.split_file),
        },
        fresh=fresh,
    )


def check_replaceable(paths, profile: str, run: str) -> None:
    """Refuse, before any work, a run that would replace published results unless asked to
    (`agegender.results.store.check_replaceable`); a chapter may call it before loading data.

    Args:
        paths: the project's `agegender.config.Paths` (None: `Paths.default()`).
        profile: the profile the run belongs to.
        run: the run's folder under ``results/<profile>/`` (a model's name for a chapter).
    """
    paths = paths or Paths.default()
    store.check_replaceable(paths.run_results(profile, run), profile=profile, run=run)


def check_settings(name: str, values: dict) -> None:
    """Refuse, without doing any work, what `train_on_utkface` would refuse with these values:
    an unknown setting, an out-of-range loader value, `TrainingConfig` field or builder option,
    and a weights file that is missing or not a weights file.

    Args:
        name: a model name.
        values: `train_on_utkface`'s keyword arguments (less ``profile``), as a chapter gets them.

    Raises:
        ValueError, AgegenderError: the first value refused, with what was received.
    """
    from agegender.models.builders import check_options

    own = (*LOADER_SETTINGS, "augment")
    settings = {key: value for key, value in values.items() if key not in own}
    loader = {key: value for key, value in values.items() if key in LOADER_SETTINGS}
    sizes = ("image_size", "batch_size")
    check_positive_int(**{key: loader[key] for key in sizes if key in loader})
    for key in ("max_train_images", "max_eval_images"):
        if loader.get(key) is not None:
            check_positive_int(**{key: loader[key]})
    color = loader.get("color", "rgb")
    check_choice(color=color, choices=tuple(COLORS))
    _, options = split_settings(name, settings)
    if "image_size" in loader:  # the builder's checks need it
        check_options(name, image_size=loader["image_size"], channels=COLORS[color][1], **options)


def split_settings(name: str, settings: dict) -> tuple[TrainingConfig, dict]:
    """Settings by name, as a `TrainingConfig` and the builder's options.

    Raises:
        ValueError: an unknown setting, listing the known ones.
    """
    fields, options = TrainingConfig.field_names(), builder_defaults(name)
    unknown = sorted(set(settings) - set(fields) - set(options))
    if unknown:
        known = ", ".join(sorted({*fields, *options}))
        first = unknown[0]
        raise ValueError(
            f"{name} has no setting {', '.join(unknown)}; its settings are {known}. "
            f"Received: {first}={settings[first]!r}"
        )
    config = TrainingConfig(**{k: v for k, v in settings.items() if k in fields})
    return config, {k: v for k, v in settings.items() if k in options}


def builder_defaults(name: str) -> dict:
    """The builder's options with their defaults (less those fixed by the data and seed)."""
    parameters = inspect.signature(spec(name).build_function()).parameters.values()
    return {
        p.name: p.default
        for p in parameters
        if p.kind is p.KEYWORD_ONLY and p.name not in NOT_SETTINGS
    }


def setting_names(name: str) -> set[str]:
    """Every setting one model's run takes by name (`train_on_utkface`'s keyword arguments, less
    the run's folder and the fresh start, and the `default_settings`)."""
    own = inspect.signature(train_on_utkface).parameters.values()
    required = {p.name for p in own if p.kind is p.KEYWORD_ONLY and p.default is p.empty}
    return (required - {"profile"}) | set(default_settings(name))


def default_settings(name: str) -> dict:
    """Every setting of one model's run with its default: the loaders', `train_on_utkface`'s,
    `TrainingConfig`'s and the builder's (the one source a chapter's parameters must match)."""
    own = inspect.signature(train_on_utkface).parameters.values()
    defaults = {
        p.name: p.default
        for p in own
        if p.kind is p.KEYWORD_ONLY
        and p.default is not p.empty
        and p.name not in ("fresh", "run", "evaluate_on")
    }
    defaults["augment"] = spec(name).augments
    defaults |= {f.name: f.default for f in dataclasses.fields(TrainingConfig)}
    return defaults | builder_defaults(name)
