"""A chapter opened on Kaggle (or Colab): its hidden set-up cell clones the repository and installs
the package, then the data and the ImageNet files attached to the notebook are found.

The hosted runtime is simulated:

- the repository: the committed set-up cell, as it is in the chapter, clones its real GitHub URL
  (``repository`` in ``_config.yml``); git is told (``url.<bare clone>.insteadOf``, in a git
  configuration of its own) to fetch it from a bare clone of this checkout instead;
- the runtime's preinstalled packages: a plain virtual environment (no system site packages)
  that sees this environment's packages, less agegender itself, as a Kaggle image comes with
  TensorFlow, Keras, pandas and the rest installed. pip treats them as installed, and never
  removes them (they lie outside its environment); what it installs goes into the new one;
- Kaggle's inputs: a folder standing for ``/kaggle/input`` (put into
  `agegender.platforms.KAGGLE_INPUT` after the set-up, the one place that names it), holding a
  UTKFace look-alike as ``utkface-new/UTKFace`` and an ImageNet file as an attached dataset.

It proves: the cell's clone and editable install (with the ``kaggle`` extra) work from a fresh
environment where agegender is not importable, in a fresh working folder; agegender imports in
the same kernel right after; the images are found in Kaggle's inputs and prepared; an ImageNet
file attached as a Kaggle dataset is found and checked by md5; a second run of the cell does
nothing. It also measures the set-up's time and what pip downloaded (a fresh pip cache).
It does not prove that a bare runtime can install the whole stack (TensorFlow alone is about
600 MB): the dependencies come preinstalled here, as on Kaggle and Colab, whose own versions
may differ from these (pip then upgrades them: the README's "restart the runtime once").
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import nbformat
import pytest

from agegender import launch, platforms
from agegender.files import file_digest
from agegender.models import weights as weights_module

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = ROOT / "book" / "02_custom_cnn.ipynb"
HDF5 = b"\x89HDF\r\n\x1a\n"


def _fake_weights(path: Path) -> str:
    """A small file that starts as an HDF5 file does; returns its md5."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(HDF5 + b"stand-in for an ImageNet weights file")
    return file_digest(path, "md5")


# Fast: the Kaggle lookup of ImageNet files, in this process.


def test_an_imagenet_file_attached_on_kaggle_is_found_and_checked(tmp_path, monkeypatch):
    spec = weights_module.IMAGENET_FILES["vgg16"]
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # not there
    monkeypatch.setattr(platforms, "KAGGLE_INPUT", tmp_path / "input")
    attached = tmp_path / "input" / "imagenet-notop" / "weights" / spec.file
    md5 = _fake_weights(attached)
    with pytest.raises(Exception, match="damaged or not the expected file"):  # the real md5
        weights_module.resolve_weights("imagenet", base="vgg16", download=False)
    monkeypatch.setitem(weights_module.IMAGENET_FILES, "vgg16", dataclasses.replace(spec, md5=md5))
    info = weights_module.resolve_weights("imagenet", base="vgg16", download=False)
    assert info.kind == "imagenet" and Path(info.path) == attached and info.md5 == md5
    weights_module.check_imagenet("vgg16")  # found: nothing to download
    # $KERAS_HOME/models comes first
    home_copy = tmp_path / "keras" / "models" / spec.file
    home_copy.parent.mkdir(parents=True)
    shutil.copy(attached, home_copy)
    assert Path(weights_module.resolve_weights("imagenet", base="vgg16").path) == home_copy


def test_without_kaggle_inputs_the_message_does_not_mention_them(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(platforms, "KAGGLE_INPUT", tmp_path / "absent")
    assert weights_module.attached_file("anything.h5") is None
    with pytest.raises(Exception, match="are not on this machine") as error:
        weights_module.resolve_weights("imagenet", base="resnet50", download=False)
    assert "Kaggle" not in str(error.value)


# Slow: the set-up cell in a simulated hosted runtime.

KERNEL = """\
import json, os, sys, time
_started = time.perf_counter()
{cell}
_setup_s = time.perf_counter() - _started

# What the chapter does next: the package, Kaggle's inputs, the data, the ImageNet weights.
import dataclasses
from pathlib import Path

import agegender
from agegender import platforms
from agegender.config import Paths
from agegender.data.sources import prepare_images
from agegender.models import weights

platforms.KAGGLE_INPUT = Path(os.environ["TEST_KAGGLE_INPUT"])  # where /kaggle/input would be
paths = Paths.default()
images = prepare_images(paths)
spec = weights.IMAGENET_FILES["vgg16"]
weights.IMAGENET_FILES["vgg16"] = dataclasses.replace(spec, md5=os.environ["TEST_MD5"])
info = weights.resolve_weights("imagenet", base="vgg16", download=False)
import kagglehub  # the kaggle extra

Path(os.environ["TEST_OUT"]).write_text(json.dumps({{
    "setup_s": _setup_s,
    "package": agegender.__file__,
    "platform": platforms.detect(),
    "root": str(paths.root),
    "images": sorted(p.name for p in images.iterdir()),
    "weights": info.to_dict(),
}}))
"""


def _setup_cell() -> str:
    """The committed set-up cell of a training chapter, as Kaggle runs it."""
    cells = nbformat.read(CHAPTER, as_version=4).cells
    return next(c for c in cells if launch.SETUP_TAG in c.metadata.get("tags", [])).source


def _preinstalled(view: Path) -> None:
    """A folder of links to this environment's packages, less agegender (and pip's own tools,
    which the new environment has)."""
    view.mkdir()
    left_out = re.compile(r"^(_*editable_*\.?)?agegender|^(pip|setuptools|wheel)\b|\.pth$", re.I)
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not left_out.search(entry.name):
            (view / entry.name).symlink_to(entry)


def _downloads(log: Path) -> dict[str, str]:
    """What pip's log says it downloaded: file name -> size (a build's own pip repeats lines)."""
    text = log.read_text() if log.is_file() else ""
    return dict(re.findall(r"Downloading (\S+) \(([^)]+)\)", text))


@pytest.fixture(scope="module")
def hosted(tmp_path_factory):
    if shutil.which("git") is None:
        pytest.skip("needs git")
    try:  # the set-up installs the kaggle extra (and the build's setuptools) from PyPI
        socket.create_connection(("pypi.org", 443), timeout=10).close()
    except OSError as error:
        pytest.skip(f"needs PyPI, as a hosted runtime has it: {error}")
    from support import make_utkface

    tmp = tmp_path_factory.mktemp("hosted")
    repo = launch.repository(ROOT)
    bare = tmp / "agegender.git"
    subprocess.run(["git", "clone", "--quiet", "--bare", str(ROOT), str(bare)], check=True)
    # The cell clones the published branch: here, the commit under test, whatever its branch.
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    subprocess.run(
        ["git", "--git-dir", str(bare), "update-ref", f"refs/heads/{repo.branch}", commit],
        check=True,
    )
    gitconfig = tmp / "gitconfig"
    gitconfig.write_text(f'[url "file://{bare}"]\n\tinsteadOf = {repo.url}\n')
    kaggle_input = tmp / "kaggle" / "input"
    make_utkface(kaggle_input / "utkface-new" / "UTKFace")
    spec = weights_module.IMAGENET_FILES["vgg16"]
    md5 = _fake_weights(kaggle_input / "imagenet-weights" / spec.file)

    venv = tmp / "runtime"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    venv_s = time.perf_counter() - started
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    _preinstalled(tmp / "preinstalled")
    (Path(site) / "preinstalled.pth").write_text(
        f"import site; site.addsitedir({str(tmp / 'preinstalled')!r})\n"
    )
    working = tmp / "working"  # /kaggle/working
    working.mkdir()
    (working / "kernel.py").write_text(KERNEL.format(cell=_setup_cell()))
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "AGEGENDER_", "UTKFACE_", "KERAS_", "PIP_", "VIRTUAL_ENV"))
    }
    env |= {
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "GIT_CONFIG_GLOBAL": str(gitconfig),
        "GIT_CONFIG_NOSYSTEM": "1",
        "KAGGLE_KERNEL_RUN_TYPE": "Interactive",
        "KERAS_HOME": str(tmp / "keras"),  # empty: the weights must come from Kaggle's inputs
        "PIP_CACHE_DIR": str(tmp / "pip-cache"),  # fresh: nothing comes from an earlier run
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_LOG": str(tmp / "pip.log"),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "TEST_KAGGLE_INPUT": str(kaggle_input),
        "TEST_MD5": md5,
        "TEST_OUT": str(tmp / "out.json"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    before = subprocess.run(
        [str(python), "-c", "import importlib.util as u; print(u.find_spec('agegender'))"],
        env=env,
        cwd=working,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    started = time.perf_counter()
    first = subprocess.run(
        [str(python), "kernel.py"], env=env, cwd=working, capture_output=True, text=True
    )
    kernel_s = time.perf_counter() - started
    assert first.returncode == 0, first.stderr[-4000:]
    again = subprocess.run(
        [str(python), "-c", _setup_cell()], env=env, cwd=working, capture_output=True, text=True
    )
    result = json.loads((tmp / "out.json").read_text())
    result |= {
        "importable_before": before,
        "venv_s": round(venv_s, 1),
        "kernel_s": round(kernel_s, 1),
        "downloads": _downloads(tmp / "pip.log"),
        "checkout": str(working / launch.CHECKOUT),
        "commit": commit,
        "second_run": again,
        "stdout": first.stdout,
    }
    report = {k: result[k] for k in ("venv_s", "kernel_s", "setup_s", "downloads")}
    print("hosted set-up:", json.dumps(report))  # shown with pytest -s
    return result


@pytest.mark.slow
def test_the_set_up_cell_clones_and_installs_where_agegender_is_missing(hosted):
    assert hosted["importable_before"] == "None"
    checkout = Path(hosted["checkout"])
    assert (checkout / ".git").is_dir() and (checkout / "pyproject.toml").is_file()
    cloned = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert cloned == hosted["commit"]  # the commit under test
    assert Path(hosted["package"]).is_relative_to(checkout / "src")  # the clone's, editable
    assert hosted["root"] == str(checkout)  # the project is the clone, not the working folder
    downloaded = " ".join(hosted["downloads"])
    assert "kagglehub" in downloaded  # the kaggle extra; the preinstalled stack is not fetched
    assert "tensorflow" not in downloaded and "keras-" not in downloaded


@pytest.mark.slow
def test_on_kaggle_the_attached_data_and_imagenet_file_are_found(hosted):
    assert hosted["platform"] == "kaggle"
    images = hosted["images"]
    assert len(images) > 100 and all(name.endswith(("jpg", "txt")) for name in images)
    weights = hosted["weights"]
    assert weights["kind"] == "imagenet"
    assert "imagenet-weights" in weights["path"]  # the attached dataset, not $KERAS_HOME


@pytest.mark.slow
def test_without_a_gpu_the_cell_says_how_to_run_the_cpu_profile_and_a_second_run_does_nothing(
    hosted,
):
    if Path("/dev/nvidia0").exists():
        pytest.skip("this machine has a GPU")
    assert "No GPU on this runtime" in hosted["stdout"]
    again = hosted["second_run"]
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Cloning" not in again.stderr  # agegender is importable now: nothing to do
