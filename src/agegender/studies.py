"""Studies: sets of runs of one model that differ in a few settings, declared by a profile.

A profile's ``studies`` section names each study, the model, the split it is judged on and the
settings its variants share; each variant changes a few of them::

    studies:
      recipe:
        model: custom_cnn
        evaluate_on: val            # choosing settings never reads the test split
        settings: {max_train_images: 3000, epochs: 8}
        variants:
          reference: {}
          cosine: {optimizer: adamw, schedule: cosine}
      seeds:
        model: custom_cnn
        from_chapter: 02_custom_cnn  # the chapter's recipe, under these changes
        evaluate_on: test
        settings: {max_train_images: 4000}
        variants: {seed_0: {seed: 0}, seed_1: {seed: 1}}

The profile's shared parameters (seed, image size, weights, ...) apply beneath the study's. Each
variant is an ordinary run (`agegender.training.utkface.train_on_utkface`), written to
``results/<profile>/studies/<study>/<variant>/`` and resumable like a chapter's. Keras-free until a
study runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from agegender.errors import AgegenderError
from agegender.models.specs import model_names
from agegender.results.store import STUDIES

EVALUATE_ON = ("val", "test")


@dataclass(frozen=True)
class Study:
    """One study of a profile: its model, the split it is judged on, and its variants."""

    name: str
    model: str
    about: str
    evaluate_on: str
    settings: dict  # shared by the variants, over the profile's parameters
    variants: dict[str, dict]  # variant name -> the settings it changes
    chapter: dict | None = None  # the chapter values it starts from (``from_chapter``)

    def run_name(self, variant: str) -> str:
        """The variant's folder under ``results/<profile>/`` (and ``data/work/<profile>/``)."""
        return f"{STUDIES}/{self.name}/{variant}"

    def variant_settings(self, variant: str, shared: dict) -> dict:
        """Every setting of one variant: the profile's shared parameters that the model takes,
        the study's settings, then the variant's."""
        from agegender.models.specs import spec
        from agegender.training.utkface import setting_names

        known = setting_names(self.model)
        if spec(self.model).base is None:
            known.discard("weights")  # the profile's ImageNet weights are not this model's
        base = {key: value for key, value in shared.items() if key in known}
        chapter = {key: value for key, value in (self.chapter or {}).items() if key in known}
        return {**base, **chapter, **self.settings, **self.variants[variant]}


def studies(profile: dict) -> dict[str, Study]:
    """The studies a loaded profile (`agegender.runner.load_profile`) declares, checked.

    Raises:
        AgegenderError: a study without variants, an unknown model, key or split, or a setting
            that the model does not take.
    """
    found = {}
    for name, entry in (profile.get("studies") or {}).items():
        found[name] = _study(name, entry, profile.get("chapters") or {})
    return found


def _study(name: str, entry: dict, chapters: dict) -> Study:
    _check_entry(name, entry, chapters)
    chapter = entry.get("from_chapter")
    study = Study(
        name=name,
        model=entry["model"],
        about=" ".join(str(entry.get("about", "")).split()),
        evaluate_on=entry.get("evaluate_on", "val"),
        settings=dict(entry.get("settings") or {}),
        variants={key: dict(value or {}) for key, value in entry["variants"].items()},
        chapter=dict(chapters[chapter]) if chapter else None,
    )
    _check_settings(study)
    return study


def _check_entry(name: str, entry: dict, chapters: dict) -> None:
    known_keys = {"model", "about", "evaluate_on", "settings", "variants", "from_chapter"}
    unknown = sorted(set(entry) - known_keys)
    if unknown:
        raise AgegenderError(f"Study {name!r} has unknown key(s) {unknown}; known: {known_keys}.")
    if entry.get("model") not in model_names():
        raise AgegenderError(
            f"Study {name!r} needs a model among {model_names()}. Received: {entry.get('model')!r}"
        )
    if entry.get("evaluate_on", "val") not in EVALUATE_ON:
        raise AgegenderError(
            f"Study {name!r}: evaluate_on must be one of {EVALUATE_ON}. "
            f"Received: {entry.get('evaluate_on')!r}"
        )
    if not entry.get("variants"):
        raise AgegenderError(f"Study {name!r} has no variants.")
    chapter = entry.get("from_chapter")
    if chapter is not None and chapter not in chapters:
        raise AgegenderError(
            f"Study {name!r} starts from chapter {chapter!r}, which the profile does not set; "
            f"it sets {sorted(chapters)}."
        )


def _check_settings(study: Study) -> None:
    from agegender.training.utkface import setting_names

    known = setting_names(study.model)
    for variant, changes in study.variants.items():
        unknown = sorted((set(study.settings) | set(changes)) - known)
        if unknown:
            raise AgegenderError(
                f"Study {study.name!r}, variant {variant!r}: {study.model} has no setting(s) "
                f"{unknown}; its settings are {sorted(known)}."
            )


def select(found: dict[str, Study], only: list[str] | None) -> list[Study]:
    """The studies named in `only` (all when None), in the profile's order."""
    if not only:
        return list(found.values())
    unknown = [name for name in only if name not in found]
    if unknown:
        raise AgegenderError(f"Unknown study(s) {unknown}; this profile has {sorted(found)}.")
    return [study for name, study in found.items() if name in only]


def run(
    data,
    profile: dict,
    study: Study,
    *,
    overrides: dict | None = None,
    fresh: bool = False,
    progress: Callable[[str], None] = print,
) -> None:
    """Run every variant of one study in turn (each resumes where it stopped)."""
    from agegender.results.store import replacing_published
    from agegender.training.utkface import train_on_utkface

    shared = {**profile["parameters"], **(overrides or {})}
    with replacing_published():  # `agegender study` is the request to replace its results
        for variant in study.variants:
            settings = study.variant_settings(variant, shared)
            progress(f"== study {study.name}, variant {variant}: {study.variants[variant]}")
            experiment = train_on_utkface(
                data,
                study.model,
                profile=profile["parameters"]["profile"],
                run=study.run_name(variant),
                evaluate_on=study.evaluate_on,
                fresh=fresh,
                **settings,
            )
            overall = experiment.metrics["overall"]
            progress(
                f"   {study.evaluate_on} age MAE {overall['age_mae']:.2f}, gender accuracy "
                f"{overall['gender_accuracy']:.3f}, "
                f"{experiment.provenance['training_time_s']:.0f} s of training"
            )
