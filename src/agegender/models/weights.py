"""Starting weights: ImageNet files (found offline or fetched with their md5), local files, none."""

from __future__ import annotations

import os
import socket
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from agegender import platforms
from agegender.errors import AgegenderError
from agegender.files import file_digest


@dataclass(frozen=True)
class ImagenetFile:
    """A keras.applications ImageNet weights file ("notop": without the classifier)."""

    base: str
    file: str
    md5: str
    url: str


IMAGENET_FILES = {
    "vgg16": ImagenetFile(
        "vgg16",
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "6d6bbae143d832006294945121d1f1fc",
        "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    "resnet50": ImagenetFile(
        "resnet50",
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "4d473c1dd8becc155b73f8504c6f6626",
        "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
}
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# How a weights file (.h5) and a saved model (.keras) begin.
SIGNATURES = {"file": HDF5_SIGNATURE, "checkpoint": b"PK\x03\x04"}
DOWNLOAD_TIMEOUT_S = 30  # per network operation, so an unreachable host fails instead of hanging


@dataclass(frozen=True)
class WeightsInfo:
    """Which initial weights a model got, for the provenance card.

    Attributes:
        kind: ``"none"`` (random initialisation), ``"imagenet"``, ``"file"`` (a weights file for
            the base, or for the whole custom CNN) or ``"checkpoint"`` (a saved ``.keras`` model).
        path: the file that was loaded, when there is one.
        md5: its md5 (the checksum keras.applications publishes for the ImageNet files).
    """

    kind: str
    path: str | None = None
    md5: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def keras_home() -> Path:
    """Keras' folder (``$KERAS_HOME``, else ``~/.keras``), read now rather than at import."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser()


def resolve_weights(weights, *, base: str | None = None, download: bool = True) -> WeightsInfo:
    """Find the file behind a ``weights`` argument, fetching ImageNet weights when needed.

    ImageNet weights are the keras.applications files: they are looked for in
    ``$KERAS_HOME/models/`` first, then on Kaggle in the datasets attached to the notebook
    (`attached_file`, for a notebook without internet), each checked against its md5, and
    downloaded into ``$KERAS_HOME/models/`` only when missing and `download` is true.

    Args:
        weights: ``None``, ``"imagenet"``, a path to a weights file (``.h5``/``.weights.h5``) or to
            a saved model (``.keras``), or an already resolved `WeightsInfo` (returned as is).
        base: the ImageNet base (``"vgg16"`` or ``"resnet50"``), or None for a model without one.
        download: allow downloading a missing ImageNet file.

    Returns:
        The `WeightsInfo` to build with and to record.

    Raises:
        AgegenderError: a missing file, or ImageNet weights that are neither in
            ``$KERAS_HOME/models/`` nor downloadable; the message says which file to put where.
    """
    if base is not None and base not in IMAGENET_FILES:
        raise ValueError(
            f"base must be one of {tuple(IMAGENET_FILES)} or None. Received: base={base!r}"
        )
    if weights is None or isinstance(weights, WeightsInfo):
        return weights or WeightsInfo("none")
    if weights == "imagenet":
        if base is None:
            raise ValueError(
                "This model has no ImageNet weights; use None or a weights file. "
                "Received: weights='imagenet'"
            )
        return _imagenet_weights(IMAGENET_FILES[base], download=download)
    return _weights_file(weights)


def _weights_file(weights) -> WeightsInfo:
    if not isinstance(weights, str | os.PathLike):
        raise ValueError(
            f"weights must be None, 'imagenet' or a path. Received: weights={weights!r}"
        )
    path = Path(weights)
    if not path.name.endswith((".h5", ".keras")):
        raise ValueError(
            "A weights file must end in .h5, .weights.h5 or .keras (for no weights, give null). "
            f"Received: weights={str(weights)!r}"
        )
    if not path.is_file():
        raise AgegenderError(f"Weights file not found: {path}")
    kind = "checkpoint" if path.suffix == ".keras" else "file"
    with path.open("rb") as file:
        start = file.read(len(HDF5_SIGNATURE))
    if not start.startswith(SIGNATURES[kind]):
        what = "a .keras model (a zip archive)" if kind == "checkpoint" else "an HDF5 weights file"
        raise AgegenderError(
            f"{path} is not {what}: it may be truncated, corrupt or another kind of file. "
            "Save it again with Keras (model.save or model.save_weights)."
        )
    return WeightsInfo(kind, str(path.resolve()), file_digest(path, "md5"))


def _how_to_get(spec: ImagenetFile) -> str:
    kaggle = " (on Kaggle without internet: in a dataset attached to the notebook)"
    return (
        f"Download {spec.file} (md5 {spec.md5}) from {spec.url} and place it at "
        f"{keras_home() / 'models' / spec.file} (set $KERAS_HOME to use another folder than "
        f"{keras_home()}){kaggle if platforms.kaggle_input_dir() else ''}, or run without them: "
        "weights=null (random initialisation; `agegender run PROFILE -p weights=null`, "
        "`make report WEIGHTS=null`) or a local file."
    )


# How deep under Kaggle's input folder an attached file is looked for: datasets are
# /kaggle/input/<dataset>/..., models /kaggle/input/<model>/<framework>/<variation>/<version>/...
KAGGLE_DEPTH = 5


def attached_file(name: str) -> Path | None:
    """A file of this name in a dataset or model attached to a Kaggle notebook (in
    ``/kaggle/input``, at most `KAGGLE_DEPTH` folders down), or None (also off Kaggle)."""
    folder = platforms.kaggle_input_dir()
    if folder is None:
        return None
    for depth in range(1, KAGGLE_DEPTH + 1):
        found = sorted(path for path in folder.glob("*/" * depth + name) if path.is_file())
        if found:
            return found[0]
    return None


def _local_imagenet(spec: ImagenetFile) -> Path | None:
    """Where an ImageNet file is on this machine: ``$KERAS_HOME/models/``, else attached on
    Kaggle; None when in neither."""
    path = keras_home() / "models" / spec.file
    return path if path.is_file() else attached_file(spec.file)


def check_imagenet(base: str) -> None:
    """Refuse, before any work, ImageNet weights that are neither on this machine (checked by
    md5) nor reachable for download now (a HEAD request to their URL); else download nothing.

    Raises:
        AgegenderError: saying where to put the file, or how to run without it.
    """
    spec = IMAGENET_FILES[base]
    if _local_imagenet(spec) is not None:
        _imagenet_weights(spec, download=False)
        return
    request = urllib.request.Request(spec.url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S):
            pass
    except OSError as error:
        raise AgegenderError(
            f"ImageNet weights for {base} are not on this machine and cannot be downloaded from "
            f"here ({error}). {_how_to_get(spec)}"
        ) from None


def _imagenet_weights(spec: ImagenetFile, *, download: bool) -> WeightsInfo:
    path = _local_imagenet(spec)
    how_to = _how_to_get(spec)
    if path is not None:
        if file_digest(path, "md5") != spec.md5:
            raise AgegenderError(
                f"{path} is damaged or not the expected file: its md5 is not {spec.md5}. {how_to}"
            )
        return WeightsInfo("imagenet", str(path), spec.md5)
    if not download:
        raise AgegenderError(f"ImageNet weights for {spec.base} are not on this machine. {how_to}")
    import keras

    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        fetched = keras.utils.get_file(
            spec.file,
            spec.url,
            file_hash=spec.md5,
            cache_subdir="models",
            cache_dir=str(keras_home()),
        )
    except Exception as error:  # any network or checksum failure: explain what to do instead
        raise AgegenderError(
            f"ImageNet weights for {spec.base} could not be downloaded "
            f"({type(error).__name__}: {error}). {how_to}"
        ) from None
    finally:
        socket.setdefaulttimeout(previous_timeout)
    return WeightsInfo("imagenet", str(fetched), spec.md5)
