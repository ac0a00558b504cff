"""Provenance: what a run used (data, parameters, software, machine), for its card and its files."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import time
from importlib import metadata

from agegender import platforms
from agegender.config import project_root

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


def versions() -> dict[str, str]:
    """Installed versions of the packages that matter here (absent ones are left out)."""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def git_commit() -> str | None:
    """The project's git commit, with ``-dirty`` when files differ from it; None outside git."""
    try:
        root = project_root()
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def backend_and_device() -> tuple[str, str]:
    """The Keras backend and the device it computes on (asks Keras only when already imported)."""
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if "keras" not in sys.modules:
        return backend, "cpu"
    import keras

    backend = keras.backend.backend()
    device = "cpu"
    if backend == "jax":
        import jax

        device = str(jax.devices()[0]).lower()
    elif backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        device = gpus[0].name if gpus else "cpu"
    elif backend == "torch":
        import torch

        device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return backend, device


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
    backend, device = backend_and_device()
    return {
        "profile": profile,
        "parameters": parameters,
        "dataset_sha256": dataset_sha256,
        "split_sha256": split_sha256,
        "weights": weights,
        "seed": parameters.get("seed"),
        "backend": backend,
        "device": device,
        "platform": platforms.detect(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "versions": versions(),
        "git_commit": git_commit(),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "wall_seconds": round(time.time() - started, 1),
    }


def card(record: dict) -> str:
    """The provenance card as a Markdown table."""

    def short(value):
        return f"`{value[:12]}`" if isinstance(value, str) and len(value) == 64 else f"`{value}`"

    rows = [
        ("Profile", f"`{record['profile']}`"),
        ("Parameters", ", ".join(f"`{k}={v!r}`" for k, v in record["parameters"].items())),
        ("Dataset sha256", short(record["dataset_sha256"])),
        ("Split sha256", short(record["split_sha256"])),
        ("Weights", record["weights"] or "n/a"),
        ("Seed", f"`{record['seed']}`"),
        ("Backend, device", f"{record['backend']}, {record['device']} ({record['machine']})"),
        ("Versions", ", ".join(f"{k} {v}" for k, v in record["versions"].items())),
        ("Git commit", f"`{_short_commit(record['git_commit'])}`"),
        ("Wall time", f"{record['wall_seconds']:.0f} s, finished {record['finished']}"),
    ]
    return "| Provenance | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def _short_commit(commit: str | None) -> str:
    if commit is None:
        return "unknown"
    sha, _, dirty = commit.partition("-")
    return sha[:12] + (" (uncommitted changes)" if dirty else "")
