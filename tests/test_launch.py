"""Colab and Kaggle: links and set-up cells all follow the one repository setting."""

import shutil
import sys
from pathlib import Path

import nbformat
import pytest

from agegender import launch, runner
from agegender.errors import AgegenderError

REPO = Path(__file__).resolve().parents[1]


def _config(root: Path, repository: str) -> launch.Repository:
    (root / "_config.yml").write_text(f"title: t\n{repository}")
    return launch.repository(root)


def test_repository_setting_gives_every_link(tmp_path):
    repo = _config(tmp_path, "repository:\n  url: https://github.com/me/book/\n  branch: dev\n")
    assert repo.file_url("book/a.ipynb") == "https://github.com/me/book/blob/dev/book/a.ipynb"
    assert repo.kaggle_url("book/a.ipynb") == (
        "https://kaggle.com/kernels/welcome?src=https://github.com/me/book/blob/dev/book/a.ipynb"
    )


@pytest.mark.parametrize(
    "repository", ["", "repository:\n  branch: main\n", "repository:\n  url: gitlab.com/me/b\n"]
)
def test_a_missing_or_non_github_repository_is_refused(tmp_path, repository):
    with pytest.raises(AgegenderError, match=r"repository\.url"):
        _config(tmp_path, repository)


def _notebook(path: Path) -> Path:
    cells = [
        nbformat.v4.new_markdown_cell("# Title"),
        nbformat.v4.new_code_cell("x: int = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("print(x)"),
    ]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    return path


def test_sync_puts_the_set_up_cell_first_once_and_follows_the_setting(tmp_path):
    notebook = _notebook(tmp_path / "ch.ipynb")
    repo = _config(tmp_path, "repository:\n  url: https://github.com/me/book\n")
    assert launch.sync_setup_cells([notebook], repo) == [notebook]
    assert launch.sync_setup_cells([notebook], repo) == []  # already in step: untouched
    cells = nbformat.read(notebook, as_version=4).cells
    assert [c.cell_type for c in cells] == ["markdown", "code", "code", "code"]
    assert cells[1].metadata.tags == ["remove-cell", launch.SETUP_TAG]
    assert '"https://github.com/me/book"' in cells[1].source
    assert "parameters" in cells[2].metadata.tags  # papermill still finds its cell

    fork = _config(tmp_path, "repository:\n  url: https://github.com/fork/book\n  branch: x\n")
    assert launch.sync_setup_cells([notebook], fork) == [notebook]
    cells = nbformat.read(notebook, as_version=4).cells
    assert len(cells) == 4
    assert '"https://github.com/fork/book"' in cells[1].source
    assert '"https://github.com/me/book"' not in cells[1].source


def test_a_chapter_installs_the_extras_its_metadata_names(tmp_path):
    notebook = _notebook(tmp_path / "ch.ipynb")
    repo = _config(tmp_path, "repository:\n  url: https://github.com/me/book\n")
    assert launch.chapter_extras(notebook) == ("kaggle",)
    content = nbformat.read(notebook, as_version=4)
    content.metadata["agegender"] = {"extras": ["predict", "kaggle"]}
    nbformat.write(content, notebook)
    assert launch.chapter_extras(notebook) == ("kaggle", "predict")
    launch.sync_setup_cells([notebook], repo)
    cell = nbformat.read(notebook, as_version=4).cells[1]
    assert 'f"./{checkout}[kaggle,predict]"' in cell.source


def test_committed_chapters_carry_the_set_up_cell_of_the_configured_repository():
    repo = launch.repository(REPO)
    for chapter in runner.chapters(REPO):
        cells = nbformat.read(chapter, as_version=4).cells
        first_code = next(c for c in cells if c.cell_type == "code")
        expected = launch.setup_cell_source(
            repo, launch.cpu_notice(chapter), launch.chapter_extras(chapter)
        )
        assert first_code.source == expected, f"{chapter.name}: run `agegender build` to sync"


def _run_setup_cell(monkeypatch, tmp_path, *, installed: bool, notice: str = "") -> list[list[str]]:
    import importlib.util
    import subprocess

    commands = []
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(subprocess, "run", lambda command, check: commands.append(command))
    if not installed:
        monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(sys, "path", list(sys.path))
    repo = launch.Repository(url="https://github.com/me/book", branch="dev")
    exec(launch.setup_cell_source(repo, notice), {})
    return commands


def test_set_up_cell_does_nothing_where_the_package_is_installed(monkeypatch, tmp_path):
    assert _run_setup_cell(monkeypatch, tmp_path, installed=True) == []


def test_set_up_cell_clones_and_installs_where_the_package_is_missing(monkeypatch, tmp_path):
    clone, install = _run_setup_cell(monkeypatch, tmp_path, installed=False)
    assert clone[:2] == ["git", "clone"]
    assert clone[-2:] == ["https://github.com/me/book", launch.CHECKOUT]
    assert "--branch=dev" in clone
    assert install[:4] == [sys.executable, "-m", "pip", "install"]
    assert install[-2:] == ["-e", f"./{launch.CHECKOUT}[kaggle]"]
    assert sys.path[0] == str(tmp_path / launch.CHECKOUT / "src")

    (tmp_path / launch.CHECKOUT).mkdir()  # a second run in the same session: no second clone
    assert [c[0] for c in _run_setup_cell(monkeypatch, tmp_path, installed=False)] == [
        sys.executable
    ]


def test_build_brings_the_set_up_cells_in_step(tmp_path, monkeypatch):
    shutil.copy(REPO / "_toc.yml", tmp_path)
    (tmp_path / "book").mkdir()
    _notebook(tmp_path / "book" / "intro.ipynb")
    _config(tmp_path, "repository:\n  url: https://github.com/me/book\n")
    monkeypatch.setattr(runner.shutil, "which", lambda *a, **k: None)  # stop before jupyter-book
    with pytest.raises(AgegenderError, match="jupyter-book is not installed"):
        runner.build(tmp_path)
    assert (
        launch.SETUP_TAG
        in nbformat.read(tmp_path / "book" / "intro.ipynb", 4).cells[1].metadata.tags
    )


def test_a_training_chapter_says_how_to_run_the_cpu_profile_on_a_hosted_cpu(
    monkeypatch, tmp_path, capsys
):
    import os
    import shutil as shutil_module

    notice = launch.cpu_notice(REPO / "book" / "02_custom_cnn.ipynb")
    for text in ("No GPU", "gpu profile", "many hours", "agegender run cpu --only custom_cnn"):
        assert text in notice
    assert "image_size = 64" in notice and f'profile = "{launch.PRIVATE_CPU}"' in notice
    assert launch.cpu_notice(REPO / "book" / "01_data.ipynb") == ""  # quick on a CPU
    real_exists = os.path.exists

    def gpu(present: bool):
        monkeypatch.setattr(shutil_module, "which", lambda name: "/bin/x" if present else None)
        monkeypatch.setattr(
            os.path, "exists", lambda p: present if p == "/dev/nvidia0" else real_exists(p)
        )

    gpu(False)
    _run_setup_cell(monkeypatch, tmp_path, installed=True, notice=notice)
    assert capsys.readouterr().out == ""  # not hosted: `agegender run` on a local CPU says nothing
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release")
    _run_setup_cell(monkeypatch, tmp_path, installed=True, notice=notice)
    assert capsys.readouterr().out.strip() == notice
    gpu(True)
    _run_setup_cell(monkeypatch, tmp_path, installed=True, notice=notice)
    assert capsys.readouterr().out == ""
