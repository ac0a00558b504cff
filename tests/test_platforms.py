import pytest

from agegender import platforms


@pytest.mark.parametrize(
    ("env", "kaggle_dir", "expected"),
    [
        ({}, False, "local"),
        ({"COLAB_RELEASE_TAG": "release-colab_20261101"}, False, "colab"),
        ({"KAGGLE_KERNEL_RUN_TYPE": "Interactive"}, False, "kaggle"),
        ({}, True, "kaggle"),
    ],
)
def test_detect(monkeypatch, tmp_path, env, kaggle_dir, expected):
    for name in ("COLAB_RELEASE_TAG", "COLAB_GPU", "KAGGLE_KERNEL_RUN_TYPE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    folder = tmp_path / "kaggle-input"
    if kaggle_dir:
        folder.mkdir()
    monkeypatch.setattr(platforms, "KAGGLE_INPUT", folder)
    assert platforms.detect() == expected
    assert (platforms.kaggle_input_dir() == folder) is kaggle_dir


@pytest.fixture
def no_platform(monkeypatch, tmp_path):
    for name in ("COLAB_RELEASE_TAG", "COLAB_GPU", "KAGGLE_KERNEL_RUN_TYPE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(platforms, "KAGGLE_INPUT", tmp_path / "kaggle-input")
    return tmp_path / "kaggle-input"


def test_default_source_is_none_on_a_local_machine(no_platform):
    assert platforms.default_source() is None


def test_default_source_on_colab_is_the_public_kaggle_copy(no_platform, monkeypatch):
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab_20261101")
    assert platforms.default_source() == platforms.KAGGLE_UTKFACE


def test_default_source_on_kaggle_prefers_an_attached_dataset(no_platform, monkeypatch):
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    no_platform.mkdir()
    assert platforms.default_source() == platforms.KAGGLE_UTKFACE  # nothing attached yet
    (no_platform / "utkface-new").mkdir()
    assert platforms.default_source() == str(no_platform)
