"""Shared fixtures: an isolated environment and project root, tiny UTKFace-like folders, and
the real UTKFace when UTKFACE_SOURCE is set (helpers live in support.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from support import REAL_SOURCE, make_utkface

from agegender.config import Paths


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch):
    """No test sees the caller's data source, project overrides or hosted platform."""
    for name in (
        *("UTKFACE_SOURCE", "UTKFACE_SHA256", "AGEGENDER_ROOT", "AGEGENDER_DATA_DIR"),
        *("COLAB_RELEASE_TAG", "COLAB_GPU", "KAGGLE_KERNEL_RUN_TYPE"),
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _op_determinism_restored():
    """Training turns TensorFlow's op determinism on for the whole process, and with it XLA off
    (`agegender.training.runtime`): a test that trains must not change how later tests compile."""
    yield
    config = sys.modules.get("tensorflow.python.framework.config")
    if config is not None and config.is_op_determinism_enabled():
        config.disable_op_determinism()


@pytest.fixture
def utkface_folder(tmp_path) -> tuple[Path, dict[str, list[str]]]:
    folder = tmp_path / "source" / "UTKFace"
    return folder, make_utkface(folder)


@pytest.fixture
def project(tmp_path, monkeypatch) -> Paths:
    """An empty project root (never the real one, whose committed split must not change)."""
    root = tmp_path / "project"
    root.mkdir()
    for marker in ("_toc.yml", "pyproject.toml"):
        (root / marker).write_text("")
    monkeypatch.setenv("AGEGENDER_ROOT", str(root))
    return Paths.default()


@pytest.fixture(scope="session")
def real_data(tmp_path_factory):
    """The real UTKFace, prepared once per session against the committed split."""
    from agegender.data.dataset import prepare

    if not REAL_SOURCE:
        pytest.skip("set UTKFACE_SOURCE to the UTKFace archive")
    repo = Path(__file__).resolve().parents[1]
    return prepare(Paths(root=repo, data=tmp_path_factory.mktemp("real-data")), REAL_SOURCE)
