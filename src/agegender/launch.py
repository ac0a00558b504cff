"""Opening the chapters on Colab and Kaggle, all derived from the ``repository`` in ``_config.yml``.

- Jupyter Book's own launch button gives Colab (``launch_buttons.colab_url``); this module is also
  a Sphinx extension (``sphinx.extra_extensions`` in ``_config.yml``) that adds Kaggle beside it.
- Every chapter starts with a hidden set-up cell that, where the package is missing (a fresh Colab
  or Kaggle session), clones the repository and installs it. `sync_setup_cells` writes that cell
  from the same setting, so a fork only edits ``_config.yml``.
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass
from pathlib import Path

import yaml

from agegender.config import project_root
from agegender.errors import AgegenderError

SETUP_TAG = "platform-setup"
CHECKOUT = "agegender-book"
KAGGLE_URL = "https://kaggle.com/kernels/welcome?src="

SETUP_CELL = string.Template("""\
# On Colab or Kaggle: fetch this project and install it (hidden in the book; a no-op elsewhere).
import importlib.util
import os
import subprocess
import sys

repository = "$url"
branch, checkout = "$branch", "$checkout"
if importlib.util.find_spec("agegender") is None:
    if not os.path.isdir(checkout):
        clone = ["git", "clone", "--depth=1", f"--branch={branch}", repository, checkout]
        subprocess.run(clone, check=True)
    package = f"./{checkout}[$extras]"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "-e", package], check=True)
    sys.path.insert(0, os.path.abspath(f"{checkout}/src"))
    importlib.invalidate_caches()""")
# The extras every chapter's set-up cell installs; a chapter that needs more names them in its
# notebook metadata: ``"agegender": {"extras": ["predict"]}``.
SETUP_EXTRAS = ("kaggle",)
# Added to the set-up cell of a chapter whose defaults (the gpu profile's) take hours on a CPU.
CPU_NOTICE = string.Template("""

# Hosted without a GPU (no /dev/nvidia0, no nvidia-smi): say how to run the cpu profile instead.
hosted = "COLAB_RELEASE_TAG" in os.environ or "KAGGLE_KERNEL_RUN_TYPE" in os.environ
no_gpu = not os.path.exists("/dev/nvidia0") or shutil.which("nvidia-smi") is None
if hosted and no_gpu:
    print(
$notice
    )""")
# The parameters whose gpu-profile values make a chapter slow on a CPU.
HEAVY = ("image_size", "batch_size", "max_train_images", "epochs", "fine_tune_epochs")
# The profile a private cpu run is written under (the cpu profile's results are published).
PRIVATE_CPU = "my-cpu"


@dataclass(frozen=True)
class Repository:
    """Where the book's sources are published (``repository`` in ``_config.yml``)."""

    url: str
    branch: str
    path_to_book: str = ""

    def __post_init__(self):
        if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", self.url):
            raise AgegenderError(
                "repository.url in _config.yml must be a GitHub repository, "
                f"https://github.com/OWNER/NAME (Colab and Kaggle open notebooks from GitHub). "
                f"Received: url={self.url!r}"
            )

    def file_url(self, path: str) -> str:
        """The GitHub page of a file given relative to the book's folder."""
        folder = self.path_to_book.strip("/")
        return f"{self.url}/blob/{self.branch}/{folder + '/' if folder else ''}{path}"

    def kaggle_url(self, path: str) -> str:
        return KAGGLE_URL + self.file_url(path)


def repository(root: Path | None = None) -> Repository:
    """The ``repository`` setting of the book's ``_config.yml``."""
    config_file = (root or project_root()) / "_config.yml"
    setting = (yaml.safe_load(config_file.read_text()) or {}).get("repository") or {}
    if "url" not in setting:
        raise AgegenderError(
            f"{config_file} has no repository.url: set it to the book's GitHub URL."
        )
    return Repository(
        url=str(setting["url"]).rstrip("/"),
        branch=str(setting.get("branch", "main")),
        path_to_book=str(setting.get("path_to_book", "")),
    )


def setup_cell_source(repo: Repository, notice: str = "", extras=SETUP_EXTRAS) -> str:
    """The hidden first code cell of every chapter, installing the package with `extras`
    (`chapter_extras`) and printing `notice` (`cpu_notice`) when it runs on Colab or Kaggle
    without a GPU."""
    source = SETUP_CELL.substitute(
        url=repo.url, branch=repo.branch, checkout=CHECKOUT, extras=",".join(extras)
    )
    if not notice:
        return source
    source = source.replace("import os\n", "import os\nimport shutil\n", 1)
    text = "\n".join(f"        {_string_source(line + chr(10))}" for line in notice.split("\n"))
    return source + CPU_NOTICE.substitute(notice=text)


def chapter_extras(notebook: Path) -> tuple[str, ...]:
    """The extras a chapter's set-up cell installs: `SETUP_EXTRAS` and those its metadata names
    (``"agegender": {"extras": [...]}``)."""
    import json

    metadata = json.loads(Path(notebook).read_text()).get("metadata", {})
    named = metadata.get("agegender", {}).get("extras", [])
    return (*SETUP_EXTRAS, *(extra for extra in named if extra not in SETUP_EXTRAS))


def cpu_notice(notebook: Path) -> str:
    """What a chapter's set-up cell says on a hosted runtime without a GPU: its defaults are the
    gpu profile's, and the values to set to run the cpu profile's instead; '' for a chapter
    whose defaults are quick on a CPU."""
    from agegender import runner

    declared = _declared(notebook)
    profile = runner.load_profile("cpu")
    wanted = {**profile["parameters"], **profile["chapters"].get(notebook.stem, {})}
    changes = {
        name: value
        for name, value in wanted.items()
        if name in declared and name != "profile" and _literal(declared[name]) != value
    }
    if not set(changes) & set(HEAVY):
        return ""
    lines = "\n".join(f"    {name} = {_source(value)}" for name, value in changes.items())
    return (
        "No GPU on this runtime. This chapter's defaults are the gpu profile's: on this CPU\n"
        "they would take many hours. To run the cpu profile instead, set these values in the\n"
        "parameters cell below, then run all:\n"
        f'    profile = "{PRIVATE_CPU}"  # results/cpu is published: use a name of your own\n'
        f"{lines}\n"
        f"Or, in a code cell: !cd {CHECKOUT} && agegender run cpu --only "
        f"{runner.chapter_name(notebook)}\n"
        "Or switch the runtime to a GPU (Colab: Runtime > Change runtime type; Kaggle:\n"
        "Settings > Accelerator)."
    )


def _declared(notebook: Path) -> dict[str, dict]:
    """The parameters cell's names, defaults (as source text) and help (none: empty)."""
    import nbformat
    from papermill.translators import PythonTranslator

    cells = nbformat.read(notebook, as_version=4).cells
    cell = next((c for c in cells if "parameters" in c.metadata.get("tags", [])), None)
    if cell is None:
        return {}
    return {p.name: {"default": p.default} for p in PythonTranslator.inspect(cell)}


def _string_source(text: str) -> str:
    """`text` as a Python string literal quoted as ruff formats it (double quotes unless the
    text holds double quotes and no single ones)."""
    return repr(text) if '"' in text and "'" not in text else json.dumps(text, ensure_ascii=False)


def _source(value) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


def _literal(parameter: dict):
    """A declared parameter's default as a value (papermill gives its source text)."""
    import ast

    try:
        return ast.literal_eval(parameter["default"])
    except (ValueError, SyntaxError):
        return parameter["default"]


def sync_setup_cells(notebooks: list[Path], repo: Repository) -> list[Path]:
    """Make each notebook's first code cell the set-up cell; returns the notebooks changed."""
    import nbformat

    changed = []
    for path in notebooks:
        notebook = nbformat.read(path, as_version=4)
        before = nbformat.writes(notebook)
        found = [c for c in notebook.cells if SETUP_TAG in c.metadata.get("tags", [])]
        cell = found[0] if found else nbformat.v4.new_code_cell()
        cell.source = setup_cell_source(repo, cpu_notice(path), chapter_extras(path))
        cell.metadata["tags"] = ["remove-cell", SETUP_TAG]
        cells = [c for c in notebook.cells if SETUP_TAG not in c.metadata.get("tags", [])]
        first_code = next((i for i, c in enumerate(cells) if c.cell_type == "code"), len(cells))
        notebook.cells = [*cells[:first_code], cell, *cells[first_code:]]
        if nbformat.writes(notebook) != before:
            nbformat.write(notebook, path)
            changed.append(path)
    return changed


def _add_kaggle_button(app, pagename, templatename, context, doctree):
    """Put a Kaggle entry in the launch menu that sphinx-book-theme made for a notebook page."""
    launch = next(
        (b for b in context.get("header_buttons", []) if b.get("label") == "launch-buttons"), None
    )
    if launch is None:
        return
    options = app.config.html_theme_options
    repo = Repository(
        url=options["repository_url"].rstrip("/"),
        branch=options.get("repository_branch") or "main",
        path_to_book=options.get("path_to_docs", ""),
    )
    launch["buttons"].append(
        {
            "type": "link",
            "text": "Kaggle",
            "tooltip": "Launch on Kaggle",
            "icon": "fab fa-kaggle",
            "url": repo.kaggle_url(f"{pagename}.ipynb"),
        }
    )


def setup(app):
    """Sphinx extension: the Kaggle launch button (after the theme's launch buttons)."""
    app.connect("html-page-context", _add_kaggle_button, priority=502)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
