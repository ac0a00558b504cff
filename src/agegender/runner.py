"""Run the book's chapters with papermill under a profile, and build the book.

A profile (``profiles/<name>.yaml`` in this package) gives parameter values shared by all chapters
and per-chapter values on top. Each chapter receives only the parameters its ``parameters`` cell
declares. Everything is checked before any chapter runs: unknown profiles, chapters and parameter
names are refused, and values must match the type hints of the parameters cell.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import yaml

from agegender.checks import check_choice, check_non_negative_int, check_positive_int
from agegender.config import project_root
from agegender.errors import AgegenderError
from agegender.external import check_chapter_parameters

TYPES = {"int": (int,), "float": (float, int), "str": (str,), "bool": (bool,)}


@dataclass(frozen=True)
class Step:
    """One chapter to execute, with the parameters it will receive."""

    notebook: Path
    parameters: dict
    profile: str | None = None


def profiles() -> list[str]:
    folder = resources.files("agegender") / "profiles"
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def default_profile() -> str:
    """``gpu`` when the Keras backend sees a GPU, else ``cpu``."""
    import keras  # noqa: F401 - so that the devices are asked of the backend

    from agegender.provenance import on_gpu

    return "gpu" if on_gpu() else "cpu"


def load_profile(name: str) -> dict:
    """The profile's ``parameters`` (shared) and ``chapters`` (per-chapter values); ``auto``
    chooses `default_profile`."""
    if name == "auto":
        name = default_profile()
        print(f"profile auto: {name}")
    if name not in profiles():
        raise AgegenderError(f"Unknown profile {name!r}; choose one of {profiles()}.")
    text = (resources.files("agegender") / "profiles" / f"{name}.yaml").read_text()
    profile = yaml.safe_load(text)
    return {
        "parameters": {"profile": name, **profile.get("parameters", {})},
        "chapters": profile.get("chapters", {}),
        "studies": profile.get("studies", {}),
        "description": profile.get("description", ""),
    }


def chapters(root: Path | None = None) -> list[Path]:
    """The notebook chapters listed in ``_toc.yml``, in reading order."""
    root = root or project_root()
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    entries = [toc["root"]]
    pending = list(toc.get("chapters", [])) + [
        c for p in toc.get("parts", []) for c in p["chapters"]
    ]
    while pending:
        entry = pending.pop(0)
        entries.append(entry["file"])
        pending[:0] = entry.get("sections", [])
    return [root / f"{e}.ipynb" for e in entries if (root / f"{e}.ipynb").is_file()]


def declared_parameters(notebook: Path) -> dict[str, dict]:
    """The parameters a notebook's ``parameters`` cell declares: name -> type, default, help."""
    import papermill

    return papermill.inspect_notebook(str(notebook))


def parse_overrides(pairs: list[str]) -> dict:
    """Parse KEY=VALUE pairs: ``["epochs=3", "lr=1e-3"]`` -> ``{"epochs": 3, "lr": 0.001}``."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise AgegenderError(f"Parameters are given as KEY=VALUE. Received: {pair!r}")
        overrides[key.strip()] = parameter_value(value)
    return overrides


INTEGER = re.compile(r"[-+]?[0-9]+")
DECIMAL = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
CONSTANTS = {"null": None, "none": None, "~": None, "": None, "true": True, "false": False}


def parameter_value(text: str):
    """A value given on the command line, read as YAML 1.2's core schema reads a scalar.

    Only ``true``/``false`` are booleans, only ``null``/``none``/``~``/nothing is None (in any
    case, so Python's ``None`` too), and numbers are plain decimals: ``010`` is 10 (YAML 1.1 reads
    8), ``1:04`` stays a string (1.1 reads 64), ``no`` stays a string (1.1 reads False), ``1e-3``
    is a number (1.1 reads a string). Quotes make a string of anything.
    """
    value = text.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    if value.lower() in CONSTANTS:
        return CONSTANTS[value.lower()]
    if INTEGER.fullmatch(value):
        return int(value)
    if DECIMAL.fullmatch(value):
        return float(value)
    return value


def plan(
    profile: str,
    *,
    only: list[str] | None = None,
    overrides: dict | None = None,
    root: Path | None = None,
) -> list[Step]:
    """Check a run completely and return the chapters to execute with their parameters.

    Args:
        profile: a profile name (see `profiles`).
        only: run only these chapters, named by file stem (``02_custom_cnn``) or model name
            (``custom_cnn``).
        overrides: parameter values that win over the profile's.
        root: the project root.
    """
    settings = load_profile(profile)
    overrides = overrides or {}
    notebooks = _select_chapters(chapters(root), only)
    declared = {nb: declared_parameters(nb) for nb in notebooks}
    _check_profile_chapters(profile, settings["chapters"], declared)
    _check_overrides(overrides, declared)
    return [
        _resolve_step(notebook, parameters, settings, overrides)
        for notebook, parameters in declared.items()
    ]


def chapter_name(notebook: Path) -> str:
    """A chapter's name without its number: ``custom_cnn`` for ``02_custom_cnn.ipynb`` (a model
    chapter is named after its model)."""
    return notebook.stem.split("_", 1)[-1]


def _select_chapters(notebooks: list[Path], only: list[str] | None) -> list[Path]:
    """`notebooks` reduced to those `only` names (by file stem or model name), in their order."""
    if not only:
        return notebooks
    names = {nb.stem: nb for nb in notebooks} | {chapter_name(nb): nb for nb in notebooks}
    unknown = [name for name in only if name not in names]
    if unknown:
        raise AgegenderError(f"Unknown chapter(s) {unknown}; choose from {sorted(names)}.")
    selected = {names[name] for name in only}
    return [nb for nb in notebooks if nb in selected]


def _check_profile_chapters(
    profile: str, chapter_values: dict, declared: dict[Path, dict[str, dict]]
) -> None:
    """Refuse per-chapter profile values that a chapter to run does not declare."""
    for notebook, values in chapter_values.items():
        path = next((nb for nb in declared if nb.stem == notebook), None)
        undeclared = sorted(set(values) - set(declared[path])) if path else []
        if undeclared:
            raise AgegenderError(
                f"Profile {profile!r} sets {undeclared} for {notebook}, which "
                "does not declare them."
            )


def _check_overrides(overrides: dict, declared: dict[Path, dict[str, dict]]) -> None:
    """Refuse overrides that no chapter to run declares."""
    if "profile" in overrides:
        raise AgegenderError(
            "The profile is not a parameter: it names the results folder every chapter writes. "
            f"Run that profile instead (agegender run {overrides['profile']}). "
            f"Received: -p profile={overrides['profile']}"
        )
    known = set().union(*declared.values()) if declared else set()
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise AgegenderError(
            f"Unknown parameter(s) {unknown}: no chapter to run declares them. "
            f"Known: {sorted(known)}."
        )


def _resolve_step(
    notebook: Path, parameters: dict[str, dict], settings: dict, overrides: dict
) -> Step:
    """The chapter's declared parameters that the profile or overrides set, type-checked."""
    values = {
        **settings["parameters"],
        **settings["chapters"].get(notebook.stem, {}),
        **overrides,
    }
    chosen = {name: values[name] for name in parameters if name in values}
    for name, value in chosen.items():
        _check_type(notebook, name, value, parameters[name]["inferred_type_name"])
    defaults = {name: ast.literal_eval(about["default"]) for name, about in parameters.items()}
    _check_values(notebook, {**defaults, **chosen})
    return Step(notebook, chosen, settings["parameters"]["profile"])


# Parameters that the chapters other than the model chapters take, and their ranges.
def check_model_name(**values) -> None:
    """Refuse a name that is not one of the models' (`agegender.models.specs.model_names`)."""
    from agegender.models.specs import model_names

    check_choice(choices=model_names(), **values)


CHAPTER_CHECKS = {
    "seed": check_non_negative_int,
    "faces_per_band": check_positive_int,
    "conflict_pairs": check_non_negative_int,
    "model": check_model_name,
    "geometry_faces": check_positive_int,
    "group_faces": check_positive_int,
    **dict.fromkeys(
        ("external_set", "external_labels", "external_name_pattern"), check_chapter_parameters
    ),
}


def _check_values(notebook: Path, values: dict) -> None:
    """Refuse a value the chapter would refuse, before any chapter runs: a model chapter's
    values as its training would check them (`agegender.training.utkface.check_settings`), the
    other chapters' by `CHAPTER_CHECKS`."""
    from agegender.models.specs import model_names

    model = chapter_name(notebook)
    values = {key: value for key, value in values.items() if key != "profile"}
    try:
        if model in model_names():
            from agegender.training.utkface import check_settings

            check_settings(model, values)
        else:
            for key in sorted(set(values) & set(CHAPTER_CHECKS)):
                CHAPTER_CHECKS[key](**{key: values[key]})
    except (ValueError, AgegenderError) as error:
        raise AgegenderError(f"{notebook.name}: {error}") from error


def _check_type(notebook: Path, name: str, value, hint: str) -> None:
    allowed = [t.strip() for t in hint.replace("Optional[", "None|").strip("]").split("|")]
    if value is None and "None" in allowed:
        return
    if any(
        isinstance(value, TYPES.get(t, ())) and not (t != "bool" and isinstance(value, bool))
        for t in allowed
    ):
        return
    raise AgegenderError(
        f"Parameter {name}={value!r} does not match its type {hint} in {notebook.name}."
    )


def execute(steps: list[Step]) -> None:
    """Execute each chapter in order, writing it back into ``book/`` only when it succeeded.

    Raises:
        AgegenderError: at the first failing chapter, naming the failing cell, or saying that its
            kernel died; the executed notebook is kept beside it as ``<chapter>.failed.ipynb``.
        KeyboardInterrupt: on Ctrl-C or SIGTERM (its argument then ``"SIGTERM"``), with the
            chapter's partial notebook removed.
    """
    from agegender.results.store import replacing_published

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # kernels inherit it: no TF notices
    # `agegender run` is the explicit request to replace a profile's published results.
    with sigterm_as_interrupt(), replacing_published():
        for step in steps:
            execute_one(step)


def execute_one(step: Step) -> None:
    """Execute one chapter into a hidden notebook beside it, which replaces it on success."""
    import papermill
    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    started = time.time()
    running = step.notebook.with_name(f".{step.notebook.stem}.running.ipynb")
    failed = step.notebook.with_suffix(".failed.ipynb")
    print(f"== {step.notebook.name} {step.parameters}", flush=True)
    try:
        papermill.execute_notebook(
            str(step.notebook),
            str(running),
            parameters=step.parameters,
            kernel_name="python3",
            cwd=str(step.notebook.parent),
            progress_bar=True,
            # Native (C++) stderr goes to this process's log, not into the notebook.
            extra_arguments=["--IPKernelApp.capture_fd_output=False"],
        )
        tidy(running, step)
        os.replace(running, step.notebook)
    except (PapermillExecutionError, DeadKernelError) as error:
        os.replace(running, failed)
        raise AgegenderError(
            f"{step.notebook.name} {what_failed(error)}\nThe executed notebook is saved as "
            f"{failed}."
        ) from error
    except BaseException:
        running.unlink(missing_ok=True)
        raise
    failed.unlink(missing_ok=True)
    seconds = round(time.time() - started, 1)
    print(f"== {step.notebook.name} done in {seconds:.0f} s", flush=True)
    record_time(step, seconds)


def what_failed(error: Exception) -> str:
    """A failed chapter's cell and error, or the words for a kernel that died."""
    from papermill.exceptions import PapermillExecutionError

    if isinstance(error, PapermillExecutionError):
        return f"failed in cell {error.exec_count}: {error.ename}: {error.evalue}"
    return (
        "stopped: its kernel died, killed from outside (most often by the system, out of memory: "
        "a smaller batch_size or image_size needs less). Run the command again to resume: a "
        "model chapter continues from its last finished epoch."
    )


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While it lasts, SIGTERM raises ``KeyboardInterrupt("SIGTERM")`` as Ctrl-C raises its own,
    so that a terminated run cleans up as an interrupted one does (papermill shuts the kernel
    down, `execute_one` removes the partial notebook)."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def record_time(step: Step, seconds: float) -> None:
    """Add one chapter's wall time to ``results/<profile>/chapter_times.json`` (the last
    execution of each chapter, with the commit it ran at), for the budget in the profile."""
    from agegender.config import Paths
    from agegender.files import write_json_atomic
    from agegender.provenance import git_commit
    from agegender.results.store import CHAPTER_TIMES, load_chapter_times

    if step.profile is None:
        return
    paths = Paths.default(root=step.notebook.parent.parent)  # the project holding book/
    path = paths.profile_results(step.profile) / CHAPTER_TIMES
    times = load_chapter_times(step.profile, paths)
    times[step.notebook.stem] = {
        "seconds": seconds,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **git_commit(),
    }
    write_json_atomic(path, dict(sorted(times.items())))


# TensorFlow's C++ log lines ("I0000 00:00:17... cudart_stub.cc:31] ...") and absl's preamble.
# They are written before any log level setting is read, so no environment variable stops them.
NATIVE_LOG_LINE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called.*"
    r"|[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w.]+:\d+\] .*)\n?",
    re.MULTILINE,
)


def tidy(path: Path, step: Step | None = None) -> None:
    """Make an executed chapter what the book shows, what a hosted runtime runs and what ruff
    accepts.

    - Papermill's injected parameters become an inert markdown cell that says what the page ran
      with (`ran_with`): left as code, they would override the chapter's defaults (the ``gpu``
      profile's) for anyone who opens the notebook on Colab or Kaggle. One from an earlier
      execution is replaced.
    - Stream outputs read as a terminal shows them at the end: progress bars (``\\r`` and
      backspace redraws, colour codes) keep their last frame only, and TensorFlow's native log
      lines go from stderr (an output left empty goes too).
    """
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    cells = []
    for cell in notebook.cells:
        tags = cell.metadata.get("tags", [])
        if RAN_WITH_TAG in tags:
            continue
        if "injected-parameters" in tags:
            cell = ran_with(cell.source, step)
        elif cell.cell_type == "code":
            cell.outputs = final_streams(cell.outputs)
        cells.append(cell)
    notebook.cells = cells
    nbformat.write(notebook, path)


RAN_WITH_TAG = "ran-with"
ANSI_CODE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def ran_with(injected: str, step: Step | None):
    """The markdown cell that replaces papermill's injected parameters: the profile and the
    values it gave this chapter."""
    import nbformat

    values = [line for line in injected.splitlines() if line and not line.startswith("#")]
    profile = f"the `{step.profile}` profile" if step and step.profile else "these parameters"
    text = (
        f"This page was executed with {profile}, which gives this chapter the values below; the "
        "chapter's own defaults (its parameters cell, hidden here) are the `gpu` profile's.\n\n"
        "```python\n" + "\n".join(values) + "\n```"
    )
    return nbformat.v4.new_markdown_cell(text, metadata={"tags": [RAN_WITH_TAG]})


def final_streams(outputs: list) -> list:
    """`outputs` with consecutive stream outputs of one name joined and rendered as a terminal
    would end up showing them (see `terminal_text`), native log lines dropped."""
    kept = _joined_streams(outputs)
    for output in kept:
        if output.output_type == "stream":
            text = terminal_text(output.text)
            output.text = NATIVE_LOG_LINE.sub("", text) if output.name == "stderr" else text
    return [o for o in kept if o.output_type != "stream" or o.text.strip()]


def _joined_streams(outputs: list) -> list:
    """`outputs` with each run of stream outputs of one name made one output."""
    kept = []
    for output in outputs:
        previous = kept[-1] if kept else None
        joins = (
            output.output_type == "stream"
            and previous is not None
            and previous.output_type == "stream"
            and previous.name == output.name
        )
        if joins:
            previous.text += output.text
        else:
            kept.append(output)
    return kept


def terminal_text(text: str) -> str:
    """What a terminal shows once `text` has been written to it: a carriage return starts the
    line again, a backspace removes the character before it, colour codes show nothing."""
    lines = []
    for line in ANSI_CODE.sub("", text).split("\n"):
        shown = ""
        for part in line.split("\r"):
            if not part:
                continue
            kept = []
            for char in part:
                if char == "\b":
                    if kept:
                        kept.pop()
                else:
                    kept.append(char)
            redrawn = "".join(kept)
            shown = redrawn + shown[len(redrawn) :]
        lines.append(shown.rstrip())
    return "\n".join(lines)


def build(root: Path | None = None) -> Path:
    """Build the book with jupyter-book, warnings as errors; returns the HTML folder."""
    from agegender import launch

    root = root or project_root()
    for notebook in launch.sync_setup_cells(chapters(root), launch.repository(root)):
        print(f"Updated the Colab/Kaggle set-up cell of {notebook.name}")
    command = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or shutil.which(
        "jupyter-book"
    )
    if command is None:
        raise AgegenderError("jupyter-book is not installed: pip install 'jupyter-book>=1.0.4,<2'")
    done = subprocess.run(
        [command, "build", str(root), "--warningiserror", "--keep-going"], check=False
    )
    if done.returncode:
        raise AgegenderError("The book build failed (warnings count as errors); see above.")
    return root / "_build" / "html"


def parameters_tables(root: Path | None = None) -> dict:
    """Per chapter (by file stem), its parameters as a table titled with the chapter: a row per
    parameter with its meaning and the value each profile runs it with (``gpu`` first: the
    chapter's defaults are its values), the profile's own value or else the chapter's default.
    """
    import pandas as pd

    from agegender.results.tables import styled

    names = sorted(profiles(), key=lambda name: (name != "gpu", name))
    settings = {name: load_profile(name) for name in names}
    tables = {}
    for notebook in chapters(root):
        rows = {}
        for name, spec in declared_parameters(notebook).items():
            rows[name] = {"meaning": spec["help"]}
            for profile, values in settings.items():
                merged = {**values["parameters"], **values["chapters"].get(notebook.stem, {})}
                value = merged[name] if name in merged else _default_value(spec["default"])
                rows[name][profile] = value if isinstance(value, str) else repr(value)
        if rows:
            table = pd.DataFrame(rows).T.rename_axis(columns="parameter")
            caption = f"{notebook.name}: what each profile runs it with"
            name = f"parameters_{notebook.stem}"
            tables[notebook.stem] = styled(table, caption, name, prose=("meaning",))
    return tables


def _default_value(text: str):
    """A parameters cell's default as a value (its source text when it is not a literal)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
