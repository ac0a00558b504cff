"""Where things live. The one place that builds project paths; nothing else hard-codes a folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MARKERS = ("_toc.yml", "pyproject.toml")


def project_root(start: Path | None = None) -> Path:
    """The project's top folder.

    `$AGEGENDER_ROOT` when set; else the nearest folder at or above `start` (default: the working
    directory, so notebooks run from `book/` find it) holding `_toc.yml` and `pyproject.toml`; else
    the checkout this package was installed from in editable mode; else the working directory.
    """
    if env := os.environ.get("AGEGENDER_ROOT"):
        return Path(env).resolve()
    here = (start or Path.cwd()).resolve()
    source_checkout = Path(__file__).resolve().parents[2]
    for candidate in (here, *here.parents, source_checkout):
        if all((candidate / marker).is_file() for marker in MARKERS):
            return candidate
    return here


@dataclass(frozen=True)
class Paths:
    """The project's folders.

    `data` holds what is large and derived from outside (raw images, caches, downloads; never
    committed) and can live elsewhere (`--data-dir`, `$AGEGENDER_DATA_DIR`). The split file is part
    of the project and always lives under `root`.
    """

    root: Path
    data: Path

    @classmethod
    def default(cls, data_dir: str | Path | None = None, root: Path | None = None) -> Paths:
        """The folders of the project at `root` (default: `project_root()`).

        The data folder is `data_dir`, else ``$AGEGENDER_DATA_DIR``, else ``<root>/data``. A
        relative ``$AGEGENDER_DATA_DIR`` is taken relative to the project root, not to the working
        directory: the variable is set once for every process, and the chapters' kernels run in
        ``book/``, so it must name the same folder from anywhere. A relative `data_dir` (given
        on the command line, ``--data-dir``) is relative to the working directory, as any path
        typed in a shell.
        """
        root = root or project_root()
        if not data_dir and (env := os.environ.get("AGEGENDER_DATA_DIR")):
            data_dir = root / env  # an absolute value stays as it is
        return cls(root=root, data=Path(data_dir or root / "data").resolve())

    @property
    def raw(self) -> Path:
        return self.data / "raw"

    @property
    def images(self) -> Path:
        return self.raw / "UTKFace"

    @property
    def images_stamp(self) -> Path:
        """Where `data prepare` records which source the images came from."""
        return self.raw / "UTKFace.source.json"

    @property
    def downloads(self) -> Path:
        return self.data / "downloads"

    @property
    def cache(self) -> Path:
        return self.data / "cache"

    @property
    def manifest_cache(self) -> Path:
        """The manifest of the images on disk, kept to skip unchanged files the next time."""
        return self.cache / "manifest.csv"

    @property
    def split_file(self) -> Path:
        return self.root / "data" / "splits" / "utkface.csv"

    @property
    def results(self) -> Path:
        return self.root / "results"

    def profile_results(self, profile: str) -> Path:
        """The runs of one profile, ``results/<profile>/``."""
        return self.results / profile

    def run_results(self, profile: str, run: str) -> Path:
        """A run's results folder, ``results/<profile>/<run>/`` (`agegender.results.store`)."""
        return self.profile_results(profile) / run

    def bench_results(self, device: str) -> Path:
        """What `agegender bench` measured on a kind of device, ``results/bench/<device>.json``."""
        return self.results / "bench" / f"{device}.json"

    def run_work(self, profile: str, run: str) -> Path:
        """A run's folder for models and training state (never committed)."""
        return self.data / "work" / profile / run

    @property
    def features(self) -> Path:
        """Cached features of frozen extractors, shared by the runs that use the same ones."""
        return self.cache / "features"
