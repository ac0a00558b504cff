"""Shared fixtures: tiny UTKFace-like folders made with Pillow, and an isolated project root."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agegender.config import Paths

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Captured before the autouse fixture below hides it from every other test.
REAL_SOURCE = os.environ.get("UTKFACE_SOURCE")

# Ten strata (5 age bands x 2 genders), ten files each: enough for 70/15/15 in every stratum.
AGES = (5, 16, 30, 45, 70)
GOOD_PER_STRATUM = 10

# Names as UTKFace really has them, accepted with these labels (age, gender, race).
ODD_BUT_ACCEPTED = {
    "39_1_20170116174525125.jpg.chip.jpg": (39, 1, None),  # race field missing
    "24_0_1_20170116220224657 .jpg.chip.jpg": (24, 0, 1),  # stray space
    "55_0_0_20170116232725357jpg.chip.jpg": (55, 0, 0),  # missing dot
    "14_0_0_2017011022340900.jpg.chip.jpg": (14, 0, 0),  # 16-digit timestamp
}
# Names that must be rejected, with the reason the manifest gives.
BAD_NAMES = {
    "abc_0_0_20170116174525125.jpg.chip.jpg": "age is not a number",
    "150_0_0_20170116174525125.jpg.chip.jpg": "age outside 0-116",
    "30_2_0_20170116174525125.jpg.chip.jpg": "gender is not 0 or 1",
    "30_1_9_20170116174525125.jpg.chip.jpg": "race is not 0-4",
    "30.jpg.chip.jpg": "too few name fields",
    "notes.txt": "not an image file name",
}
# Well-named files whose contents are bad.
BAD_CONTENTS = {
    "20_0_0_20170101000000001.jpg.chip.jpg": "empty file",
    "21_0_0_20170101000000002.jpg.chip.jpg": "truncated or corrupt image",
    "22_0_0_20170101000000003.jpg.chip.jpg": "not a readable image",
}


def write_jpeg(path: Path, seed: int, size: int = 48) -> bytes:
    """A small noisy JPEG, distinct per seed; returns its bytes."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="JPEG", quality=90)
    return path.read_bytes()


def make_utkface(folder: Path) -> dict[str, list[str]]:
    """Fill `folder` with a small UTKFace look-alike; returns the file names by kind."""
    kinds: dict[str, list[str]] = {
        "good": [],
        "odd": [],
        "bad_name": [],
        "bad_content": [],
        "copy": [],
        "conflict": [],
    }
    seed = 0
    for age in AGES:
        for gender in (0, 1):
            for i in range(GOOD_PER_STRATUM):
                seed += 1
                name = f"{age + i % 3}_{gender}_{i % 5}_2017011{i}{seed:011d}.jpg.chip.jpg"
                write_jpeg(folder / name, seed)
                kinds["good"].append(name)
    for name in ODD_BUT_ACCEPTED:
        seed += 1
        write_jpeg(folder / name, seed)
        kinds["odd"].append(name)
    for name in BAD_NAMES:
        seed += 1
        write_jpeg(folder / name, seed)
        kinds["bad_name"].append(name)
    empty, truncated, text = BAD_CONTENTS
    (folder / empty).write_bytes(b"")
    (folder / truncated).write_bytes(write_jpeg(folder / truncated, seed + 1)[:300])
    (folder / text).write_text("this is not an image")
    kinds["bad_content"] += [empty, truncated, text]
    # A consistent duplicate (same labels, byte-identical) and a conflicting one (age differs).
    original = kinds["good"][0]
    consistent_copy = original.replace("2017011", "2018011")
    (folder / consistent_copy).write_bytes((folder / original).read_bytes())
    kinds["copy"].append(consistent_copy)
    age, rest = kinds["good"][1].split("_", 1)
    conflicting = f"{int(age) + 7}_{rest}".replace("2017011", "2019011")
    (folder / conflicting).write_bytes((folder / kinds["good"][1]).read_bytes())
    kinds["conflict"] += [kinds["good"][1], conflicting]
    return kinds


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch):
    """No test sees the caller's data source, project overrides or hosted platform."""
    for name in (
        *("UTKFACE_SOURCE", "UTKFACE_SHA256", "AGEGENDER_ROOT", "AGEGENDER_DATA_DIR"),
        *("COLAB_RELEASE_TAG", "COLAB_GPU", "KAGGLE_KERNEL_RUN_TYPE"),
    ):
        monkeypatch.delenv(name, raising=False)


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
