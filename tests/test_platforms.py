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
