"""Trained models: where a run keeps its model, and loading one in one call.

A run keeps its trained model in its work folder, never committed::

    data/work/<profile>/<run>/best.keras    the best epoch's model (images -> age, gender)
    data/work/<profile>/<run>/model.keras   a model trained on features, end to end

`model_file` finds it from a results folder (``results/<profile>/<run>``), whose provenance
names the file (``model_file``; runs written before are mapped by their model's spec), and
`load_model` loads it with the project's layers registered. The path lookup is Keras-free.
"""

from __future__ import annotations

from pathlib import Path

from agegender.config import Paths
from agegender.errors import AgegenderError

MODEL_FILES = ("best.keras", "model.keras")


def model_file(path, paths: Paths | None = None) -> Path:
    """The ``.keras`` file of a trained model given as itself, as a run's results folder
    (``results/<profile>/<run>``) or as its work folder (``data/work/<profile>/<run>``).

    Raises:
        AgegenderError: no trained model there, saying where models live and how to train one.
    """
    path, paths = Path(path), paths or Paths.default()
    if path.suffix == ".keras":
        found = path
    elif (path / "provenance.json").is_file():
        found = _from_results(path, paths)
    else:  # a work folder: the end-to-end model first
        found = next((path / n for n in reversed(MODEL_FILES) if (path / n).is_file()), path)
    if not found.is_file():
        raise AgegenderError(
            f"No trained model at {found} (asked for {path}). A model's chapter keeps the model it "
            "trained in data/work/<profile>/<model>/best.keras (model.keras for a model trained "
            "on features), which is never committed: train one with `agegender run <profile> "
            "--only <model>` (e.g. `.venv/bin/agegender run cpu --only custom_cnn`), then load it "
            "with agegender.load_model('results/<profile>/<model>')."
        )
    return found


def _from_results(folder: Path, paths: Paths) -> Path:
    """The work folder's model of a results folder (`agegender.results.store`)."""
    import json

    from agegender.models.specs import MODELS

    record = json.loads((folder / "provenance.json").read_text())
    if "peer" in record or "baseline" in record:
        raise AgegenderError(
            f"{folder} holds the results of a {'peer' if 'peer' in record else 'baseline'}, "
            "which is not a model trained here: there is no model file to load."
        )
    name = record.get("model_file")
    if name is None:  # written before runs named their model file
        model = MODELS.get((record.get("parameters") or {}).get("model"))
        name = "model.keras" if model is not None and model.on_features else "best.keras"
    try:
        profile, *run = folder.resolve().relative_to(paths.results.resolve()).parts
    except ValueError:  # a results folder outside the project's: its provenance and name
        profile, run = record.get("profile"), [folder.name]
    if not profile or not run:
        raise AgegenderError(f"{folder} is not a run's results folder, results/<profile>/<run>.")
    return paths.run_work(profile, "/".join(run)) / name


def load_model(path, paths: Paths | None = None):
    """A trained model, ready to predict (``model.predict(images)`` gives ``age`` in years and
    ``gender``, the probability of female), in one call.

    Args:
        path: a ``.keras`` file, a run's results folder (``results/cpu/custom_cnn``) or its
            work folder (``data/work/cpu/custom_cnn``).
        paths: the project's folders (default: `Paths.default()`).

    Returns:
        The `keras.Model`, without its optimiser state (it is for inference).

    Raises:
        AgegenderError: no trained model there, or a file that is not an age and gender model.
    """
    from agegender.models.builders import load_checkpoint  # registers the project's layers

    return load_checkpoint(model_file(path, paths))
