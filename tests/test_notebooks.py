"""The chapters run under nbval, and the book builds with every chapter and no error text.

The chapters run on a small subset of the real data when UTKFACE_SOURCE is set (CI), and on
generated fixture images otherwise, in a scratch project root so the repository is never touched.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import papermill
import pytest
from support import REAL_SOURCE, make_utkface

from agegender import launch, runner
from agegender.config import Paths
from agegender.data.dataset import prepare

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ignore_logs = shutil.ignore_patterns("*.log")


@pytest.fixture(scope="module")
def scratch_project(request, tmp_path_factory):
    """A project root with the repository's book files, and prepared data for it (returned with
    the data folder the chapters must use)."""
    root = tmp_path_factory.mktemp("project")
    for name in ("_toc.yml", "_config.yml", "pyproject.toml"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "book", root / "book")
    # The performance appendix shows the committed bench figures (it never measures).
    shutil.copytree(REPO / "results" / "bench", root / "results" / "bench", ignore=ignore_logs)
    if REAL_SOURCE:
        shutil.copytree(REPO / "data" / "splits", root / "data" / "splits")
        data_dir = request.getfixturevalue("real_data").paths.data
    else:
        data_dir = root / "data"
        make_utkface(root / "fixture" / "UTKFace")
        prepare(Paths(root=root, data=data_dir), str(root / "fixture" / "UTKFace"))
    return root, data_dir


def test_chapters_run_under_nbval_with_the_smoke_profile(scratch_project):
    scratch_project, data_dir = scratch_project
    prepared = []
    for step in runner.plan("smoke", root=scratch_project):
        target = step.notebook.with_name(f"smoke_{step.notebook.name}")
        papermill.execute_notebook(
            str(step.notebook),
            str(target),
            parameters=step.parameters,
            prepare_only=True,
            progress_bar=False,
        )
        prepared.append(str(target))
    assert prepared, "the toc lists at least one notebook chapter"
    env = {
        **os.environ,
        "AGEGENDER_ROOT": str(scratch_project),
        "AGEGENDER_DATA_DIR": str(data_dir),
    }
    env.pop("UTKFACE_SOURCE", None)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval-lax",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(scratch_project),
            *prepared,
        ],
        cwd=scratch_project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout  # one test per code cell


def test_the_book_builds_with_every_chapter_and_no_error_text(tmp_path):
    for name in ("_toc.yml", "_config.yml"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(
        REPO / "book", tmp_path / "book", ignore=shutil.ignore_patterns("*.failed.ipynb", ".*")
    )
    (tmp_path / "pyproject.toml").touch()
    html = runner.build(tmp_path)
    repo = launch.repository(tmp_path)
    for chapter in runner.chapters(tmp_path):
        page = (html / "book" / f"{chapter.stem}.html").read_text()
        source = f"book/{chapter.name}"
        for button in (
            repo.kaggle_url(source),
            repo.file_url(source).replace("github.com", "colab.research.google.com/github"),
        ):
            assert f'href="{button}"' in page, f"{chapter.name} lacks {button}"
        assert "find_spec" not in page, f"{chapter.name} shows its set-up cell"
        text = re.sub(r"<[^>]+>", " ", page)
        for bad in (
            *("Traceback", "Warning:", "Error:", "DeprecationWarning", "TqdmWarning"),
            *("absl::", "cuda drivers"),  # TensorFlow's native log lines
        ):
            assert bad not in text, f"{chapter.name} shows {bad!r}"
    assert (html / "book" / "intro.html").is_file()
