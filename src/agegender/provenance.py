"""Provenance: what a run used (data, parameters, software, machine), for its card and its files."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from agegender import platforms
from agegender.config import project_root
from agegender.models.specs import MODELS

# What `agegender run` rewrites as it goes: not a change to the code that made the numbers.
RUN_OUTPUTS = (":(exclude)book/*.ipynb", ":(exclude)results")
PACKAGES = (
    "agegender",
    "keras",
    "tensorflow",
    "jax",
    "torch",
    "numpy",
    "pandas",
    "pillow",
    "papermill",
)


def versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Python's version and those of the installed `packages` (absent ones are left out)."""
    found = {"python": platform.python_version()}
    for name in packages:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def git_commit() -> dict:
    """``{"git_commit": sha or None, "git_dirty": bool or None}`` of the project's checkout.

    ``git_dirty`` says whether the code differs from the commit; the chapters and results that a
    run itself rewrites (`RUN_OUTPUTS`) do not count.
    """
    try:
        root = project_root()
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *RUN_OUTPUTS],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": commit or None, "git_dirty": bool(status.strip())}


def backend() -> str:
    """The Keras backend (from the environment when Keras is not imported yet)."""
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def devices() -> list[str]:
    """The devices the Keras backend computes on, e.g. ``["gpu:0"]`` or ``["cpu:0"]``.

    Keras is not imported for this: without it (the data chapter), the answer is the CPU.
    """
    if "keras" not in sys.modules:
        return ["cpu:0"]
    import keras

    try:
        return [str(device) for device in keras.distribution.list_devices()]
    except Exception:  # backends without keras.distribution (torch): ask the backend itself
        if keras.backend.backend() == "torch":
            torch = __import__("torch")
            if torch.cuda.is_available():
                return [f"gpu:{i}" for i in range(torch.cuda.device_count())]
        return ["cpu:0"]


def on_gpu() -> bool:
    return any(device.lower().startswith(("gpu", "cuda")) for device in devices())


def collect(
    *,
    profile: str,
    parameters: dict,
    started: float,
    dataset_sha256: str | None = None,
    split_sha256: str | None = None,
    weights: str | None = None,
) -> dict:
    """Everything a reader needs to trace a number back to the run that made it.

    Args:
        profile: the profile the run belongs to.
        parameters: the chapter's parameters.
        started: `time.time()` at the start of the run.
        dataset_sha256, split_sha256: from `agegender.data.dataset.report`.
        weights: the weights actually used (e.g. ``"none (random initialisation)"``).
    """
    return {
        "profile": profile,
        "parameters": parameters,
        "dataset_sha256": dataset_sha256,
        "split_sha256": split_sha256,
        "weights": weights,
        "seed": parameters.get("seed"),
        **software_and_machine(),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_time_s": round(time.time() - started, 1),
    }


def software_and_machine() -> dict:
    """Backend, devices, platform, machine, package versions and git commit."""
    return {
        "backend": backend(),
        "devices": devices(),
        "platform": platforms.detect(),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs",
        "versions": versions(),
        **git_commit(),
    }


def card(record: dict) -> str:
    """The provenance card as a Markdown table."""

    def short(value):
        return f"`{value[:12]}`" if isinstance(value, str) and len(value) == 64 else f"`{value}`"

    rows = [
        ("Profile", f"`{record['profile']}`"),
        ("Parameters", ", ".join(f"`{k}={v!r}`" for k, v in _flat(record["parameters"]))),
        ("Dataset sha256", short(record["dataset_sha256"])),
        ("Split sha256", short(record["split_sha256"])),
        ("Weights", weights_label(record["weights"]) if record["weights"] else "n/a"),
        ("Seed", f"`{record['seed']}`"),
        (
            "Backend, devices",
            f"{record['backend']}, {', '.join(record['devices'])} ({record['machine']})",
        ),
        ("Versions", ", ".join(f"{k} {v}" for k, v in record["versions"].items())),
        ("Git commit", _short_commit(record["git_commit"], record["git_dirty"])),
        ("Wall time", f"{record['wall_time_s']:.0f} s, finished {record['finished_at']}"),
    ]
    return "| Provenance | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def weights_label(weights: dict | str) -> str:
    """``"ImageNet"``, ``"random initialisation"``, or the file that was loaded."""
    if isinstance(weights, str):
        return weights
    if weights["kind"] == "imagenet":
        return "ImageNet"
    if weights["kind"] == "none":
        return "random initialisation"
    return f"{weights['kind']}: {Path(weights['path']).name}"


def _flat(parameters: dict, prefix: str = ""):
    """Nested parameters as dotted (key, value) pairs, leaving out checksums and weights."""
    for key, value in parameters.items():
        if key == "weights" or key.endswith("sha256"):
            continue
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _short_commit(commit: str | None, dirty: bool | None) -> str:
    if commit is None:
        return "unknown"
    return f"`{commit[:12]}`" + (" (with uncommitted changes)" if dirty else "")


def weights_words(run: str, record: dict) -> tuple[str, str]:
    """What a run started from, as a table cell and as a caption's phrase.

    Args:
        run: the run's name (a model of `agegender.models.specs`, a peer or a baseline).
        record: its provenance; a peer or a baseline records its ``weights`` as a sentence.
    """
    weights = record["weights"]
    if "baseline" in record:
        return "baseline", weights
    if isinstance(weights, str):
        return "off the shelf", weights
    model = MODELS.get(run)
    transfer = bool(model and model.transfer)
    if weights["kind"] == "none" and not transfer:
        return "from scratch", "trained from scratch"
    label = weights_label(weights)
    if weights["kind"] == "none":
        return "random init (not transfer)", f"{label} (not transfer learning)"
    return label, label


def weights_notice(model: str, record: dict) -> str:
    """A MyST warning for a transfer model that did not start from ImageNet, saying what its
    numbers measure given what actually trained (from the run's provenance `record`); else ''."""
    spec, weights = MODELS.get(model), record["weights"]
    if spec is None or not spec.transfer or weights["kind"] == "imagenet":
        return ""
    used = "random initialisation" if weights["kind"] == "none" else f"`{weights['path']}`"
    return (
        ":::{warning}\n"
        f"**This run is not transfer learning.** {model} started from {used}, not from ImageNet "
        "weights (they could not be downloaded where this book was built). "
        f"{_what_trained(spec, record)} "
        'Rerun with `weights="imagenet"` (the default on any connected machine, see *Reproduce*) '
        "for the transfer-learning result this chapter is about.\n:::"
    )


def _what_trained(spec, record: dict) -> str:
    """What of a transfer model learned in a run, and so what its numbers measure."""
    config = record["parameters"]["config"]
    if spec.on_features:
        return (
            "Its convolutional base stayed frozen at those starting values, so only the two heads "
            "learned, from features the base was never trained to make: its numbers measure "
            "heads on a fixed, untrained projection of the image, not what this architecture can "
            "learn."
        )
    blocks, epochs = config.get("fine_tune_blocks", 0), config.get("fine_tune_epochs", 0)
    if not (spec.fine_tunes and blocks and epochs):
        return "Its base stayed frozen at those starting values; only the heads learned."
    return (
        f"Its base stayed frozen at those starting values except the top {blocks} blocks, which "
        f"trained for {epochs} epoch{'s' if epochs != 1 else ''} after the heads (their "
        "batch-norm layers stay frozen too): most of the network never learned, so its numbers "
        "say little about what this architecture can learn."
    )
