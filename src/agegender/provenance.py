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


def git(*arguments: str, cwd: Path) -> str | None:
    """The output of ``git ARGUMENTS`` run in `cwd`, or None where git or a repository is
    missing."""
    try:
        return subprocess.run(
            ["git", *arguments], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def git_commit() -> dict:
    """``{"git_commit": sha or None, "git_dirty": bool or None}`` of the project's checkout.

    ``git_dirty`` says whether the code differs from the commit; the chapters and results that a
    run itself rewrites (`RUN_OUTPUTS`) do not count.
    """
    root = project_root()
    commit = git("rev-parse", "HEAD", cwd=root)
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".", *RUN_OUTPUTS, cwd=root)
    if commit is None or status is None:
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": commit.strip() or None, "git_dirty": bool(status.strip())}


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
    """The provenance card: a Markdown table of what matters for the run, then every parameter
    folded in an HTML ``<details>`` element.

    A trained model's card shows its data, the training settings that it uses and that are not
    defaults (epochs and learning rate always), the model's own options, and its training time
    summed over every invocation (saying when it was resumed), beside this invocation's wall time.
    """
    parameters = record.get("parameters") or {}
    chips = list(_flat(parameters))
    trained = isinstance(parameters.get("config"), dict)
    rows = [("Profile", f"`{record.get('profile')}`")]
    if trained:
        rows += _run_rows(parameters)
    else:
        rows.append(("Parameters", _chips(chips) or "none"))
    weights = record.get("weights")
    rows += [
        ("Weights", weights_label(weights) if weights else "n/a"),
        ("Seed", f"`{record.get('seed')}`"),
        ("Dataset sha256", _short(record.get("dataset_sha256"))),
        ("Split sha256", _short(record.get("split_sha256"))),
        ("Backend, devices", _backend(record)),
        ("Versions", ", ".join(f"{k} {v}" for k, v in (record.get("versions") or {}).items())),
        ("Git commit", _short_commit(record.get("git_commit"), record.get("git_dirty"))),
        ("Time", time_words(record)),
    ]
    table = "| Provenance | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
    if not trained:
        return table
    # An HTML block: blank lines around its Markdown, so MyST and CommonMark both render it.
    return (
        f"{table}\n\n<details>\n<summary>All parameters ({len(chips)})</summary>\n\n"
        f"{_chips(chips)}\n\n</details>"
    )


# Training settings shown on a card even at their defaults; those of the fine-tuning stage only
# where the model has one and the run used it.
ALWAYS_SHOWN = ("epochs", "learning_rate")
FINE_TUNING = ("fine_tune_epochs", "fine_tune_blocks", "fine_tune_learning_rate")
# Settings that do not change what is learned (or are shown in another row).
NOT_SHOWN = ("seed", "verbose", "bootstrap_resamples", "mixed_precision", "jit_compile", "devices")


def _run_rows(parameters: dict) -> list[tuple[str, str]]:
    """A trained model's rows: its data, its training settings, its own options."""
    from agegender.training.config import TrainingConfig

    config, defaults = parameters["config"], TrainingConfig()
    model = MODELS.get(parameters.get("model"))
    fine_tuned = bool(model and model.fine_tunes and config.get("fine_tune_epochs"))
    order = {name: i for i, name in enumerate(TrainingConfig.field_names())}
    training = {
        key: config[key]
        for key in sorted(config, key=lambda name: order.get(name, len(order)))
        if key not in NOT_SHOWN
        and (fine_tuned or key not in FINE_TUNING)
        and (
            key in ALWAYS_SHOWN
            or (fine_tuned and key in FINE_TUNING)
            or config[key] != getattr(defaults, key, None)
        )
    }
    options = {k: v for k, v in (parameters.get("model_options") or {}).items() if k != "seed"}
    augmentation = options.pop("augmentation", None)
    own = _chips(options.items())
    if "augmentation" in (parameters.get("model_options") or {}):
        own += (", " if own else "") + _augmentation_words(augmentation)
    return [
        ("Model", f"`{parameters.get('model')}`" + (f": {own}" if own else "")),
        ("Data", _data_words(parameters)),
        ("Training", _chips(training.items())),
    ]


def _data_words(parameters: dict) -> str:
    data = parameters.get("data") or {}
    names = {"train": "training", "val": "validation", "test": "test"}
    sizes = ", ".join(
        f"{data[split]['images']:,} {names[split]}"
        for split in names
        if "images" in data.get(split, {})
    )
    words = [f"{sizes} images" if sizes else None]
    if parameters.get("image_size"):
        colour = {1: " grey", 3: " RGB"}.get(parameters.get("channels"), "")
        words.append(f"{parameters['image_size']} px{colour}")
    batch = data.get("train", {}).get("batch_size")
    if batch:
        words.append(f"batches of {batch}")
    return ", ".join(w for w in words if w) or "n/a"


def _augmentation_words(augmentation) -> str:
    if not augmentation:
        return "no augmentation"
    if not isinstance(augmentation, dict):
        return f"augmentation `{augmentation}`"
    return "augmentation (" + _chips(augmentation.items()) + ")"


def _backend(record: dict) -> str:
    words = f"{record.get('backend')}, {devices_words(record)}"
    if record.get("machine"):
        words += f" ({record['machine']})"
    parameters = record.get("parameters") or {}
    if "mixed_precision" in parameters:
        words += ", mixed precision" if parameters["mixed_precision"] else ", float32"
    if "jit_compile" in parameters:
        words += f", XLA {_on_off(parameters['jit_compile'])}"
    return words


def devices_words(record: dict) -> str:
    """The devices a run computed on and, on several, how: ``"gpu:0, gpu:1, data parallel
    (keras.distribution.DataParallel; global batch 256, 128 per device; learning rate multiplied
    by √2)"``.

    ``devices`` in a record are those the backend saw; a trained model's ``distribution`` says
    which of them it trained on (`agegender.training.distribution.Distribution.record`).
    """
    visible = list(record.get("devices") or [])
    distribution = record.get("distribution") or {}
    used = list(distribution.get("devices") or visible)
    words = ", ".join(used)
    if used != visible and visible:
        words += f" (of {len(visible)} visible: {', '.join(visible)})"
    strategy = distribution.get("strategy")
    if strategy and len(used) > 1:
        batch = distribution.get("global_batch_size")
        share = distribution.get("per_device_batch_size")
        sizes = f"global batch {batch}, {share} per device; " if batch else ""
        words += f", data parallel ({strategy}; {sizes}learning rate multiplied by √{len(used)})"
    return words


def _on_off(value) -> str:
    return {True: "on", False: "off"}.get(value, f"`{value}`")


def time_words(record: dict) -> str:
    """When the run finished and what it took: for a trained model, its training time summed over
    every invocation (an interrupted run started again counts each part) and whether it was
    resumed, then this invocation's wall time."""
    wall = duration(record.get("wall_time_s"))
    finished = f"finished {record.get('finished_at')}"
    training = record.get("training_time_s")
    if training is None:
        return f"wall time {wall}, {finished}"
    total = training + (record.get("feature_extraction_s") or 0.0)
    words = f"training {duration(total)}"
    invocations = record.get("invocations")
    if invocations and invocations > 1:
        words += f" over {invocations} invocations"
    if record.get("resumed"):
        words += " (resumed)"
    return f"{words}; this invocation {wall} wall time, {finished}"


def duration(seconds: float | None) -> str:
    """``"20 s"``, ``"6 min 6 s"``, ``"2 h 5 min"``."""
    if seconds is None:
        return "unknown"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _chips(pairs) -> str:
    return ", ".join(f"`{k}={v!r}`" for k, v in pairs)


def _short(value) -> str:
    return f"`{value[:12]}`" if isinstance(value, str) and len(value) == 64 else f"`{value}`"


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
        'Rerun with `weights="imagenet"` (the default on any connected machine, see '
        "[Reproduce](06_reproduce.ipynb)) for the transfer-learning result this chapter is about."
        "\n:::"
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
