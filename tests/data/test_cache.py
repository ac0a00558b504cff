import numpy as np
import pytest

from agegender.data import cache as cache_module
from agegender.data.cache import build_image_cache, load_image, open_image_cache
from agegender.data.manifest import apply_duplicate_policy, scan
from agegender.data.split import make_split


@pytest.fixture
def split(utkface_folder):
    folder, _ = utkface_folder
    return folder, make_split(apply_duplicate_policy(scan(folder)))


def test_cache_holds_each_image_once_in_split_order(split, tmp_path):
    folder, table = split
    cache = build_image_cache(table, folder, tmp_path / "cache", size=16)
    assert cache.images.shape == (len(table), 16, 16, 3)
    assert cache.images.dtype == np.uint8
    assert isinstance(cache.images, np.memmap) and not cache.images.flags.writeable
    assert cache.files.tolist() == table["file"].tolist()
    for i in (0, len(table) // 2, len(table) - 1):
        np.testing.assert_array_equal(cache.images[i], load_image(folder / table["file"][i], 16))


def test_grey_cache_has_one_channel(split, tmp_path):
    folder, table = split
    cache = build_image_cache(table, folder, tmp_path / "cache", size=12, color="grey")
    assert cache.images.shape == (len(table), 12, 12, 1)


def test_cache_is_reused_and_rebuilt_only_when_its_rows_change(split, tmp_path, monkeypatch):
    folder, table = split
    root = tmp_path / "cache"
    first = build_image_cache(table, folder, root, size=16)
    monkeypatch.setattr(cache_module, "load_image", None)  # a rebuild would now fail
    again = build_image_cache(table, folder, root, size=16)
    assert again.folder == first.folder and again.meta == first.meta
    monkeypatch.undo()

    changed = table.copy()
    changed.loc[0, "sha256"] = "f" * 64  # the same file with new contents
    rebuilt = build_image_cache(changed, folder, root, size=16)
    assert rebuilt.folder != first.folder
    assert not first.folder.exists()  # the stale cache of this size is gone
    other_size = build_image_cache(table, folder, root, size=20)
    assert rebuilt.folder.exists() and other_size.folder.exists()


def test_interrupted_build_leaves_no_cache(split, tmp_path, monkeypatch):
    folder, table = split
    calls = []

    def failing(path, size, mode="RGB"):
        calls.append(path)
        if len(calls) == 10:
            raise KeyboardInterrupt
        return load_image(path, size, mode)

    monkeypatch.setattr(cache_module, "load_image", failing)
    with pytest.raises(KeyboardInterrupt):
        build_image_cache(table, folder, tmp_path / "cache", size=16, workers=1)
    assert list((tmp_path / "cache").iterdir()) == []


def test_unreadable_cache_is_reported(split, tmp_path):
    folder, table = split
    cache = build_image_cache(table, folder, tmp_path / "cache", size=16)
    (cache.folder / "images.npy").write_bytes(b"garbage")
    with pytest.raises(Exception, match="delete it to rebuild"):
        open_image_cache(cache.folder)


@pytest.mark.parametrize(
    ("size", "color"), [(4, "rgb"), (2000, "rgb"), (16.0, "rgb"), (16, "cmyk")]
)
def test_bad_cache_arguments_are_refused(split, tmp_path, size, color):
    folder, table = split
    with pytest.raises(ValueError, match="Received"):
        build_image_cache(table, folder, tmp_path, size=size, color=color)


def test_load_image_shrinks_and_converts(tmp_path):
    from support import write_jpeg

    write_jpeg(tmp_path / "a.jpg", seed=1, size=200)
    assert load_image(tmp_path / "a.jpg", 64).shape == (64, 64, 3)
    assert load_image(tmp_path / "a.jpg", 224).shape == (224, 224, 3)  # enlarging works too
    assert load_image(tmp_path / "a.jpg", 32, "L").shape == (32, 32)
