"""Age and gender estimation on UTKFace.

``agegender.load_model(path)`` loads a trained model (`agegender.models.saved`); Keras is
imported when it is first called, so that importing the package stays light. Where Keras is
already imported, importing the package registers the project's layers, so that
``keras.saving.load_model`` reads its models too.
"""

import importlib
import sys

__version__ = "0.1.0"


def load_model(path, paths=None):
    """A trained model from a ``.keras`` file or a run's results folder, e.g.
    ``agegender.load_model("results/cpu/custom_cnn")`` (`agegender.models.saved.load_model`)."""
    from agegender.models.saved import load_model as load

    return load(path, paths)


if "keras" in sys.modules:  # cheap then: register the layers for keras.saving.load_model
    importlib.import_module("agegender.models.layers")
