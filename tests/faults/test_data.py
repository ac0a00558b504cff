"""Damaged, edited, stale or odd data is checked and used, or refused with what to do (issue 14)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support import write_jpeg

from agegender.config import Paths
from agegender.data.cache import load_image
from agegender.data.dataset import prepare
from agegender.data.manifest import scan
from agegender.errors import AgegenderError

TIMESTAMP = "20170116174525125"


def _reasons(folder, **kwargs) -> dict[str, str]:
    table = scan(folder, **kwargs)
    return dict(zip(table["file"], table["reason"], strict=True))


# --- names --------------------------------------------------------------------------------------


def test_odd_names_are_rejected_with_a_reason_and_the_scan_goes_on(tmp_path):
    folder = tmp_path / "UTKFace"
    write_jpeg(folder / f"30_0_0_{TIMESTAMP}.jpg.chip.jpg", seed=1)
    odd = {
        f"²_0_0_{TIMESTAMP}.jpg.chip.jpg": "age is not a number",
        f"\uff13\uff10_0_0_{TIMESTAMP}.jpg.chip.jpg": "age is not a number",  # fullwidth digits
        f"30_0_\uff13_{TIMESTAMP}.jpg.chip.jpg": "race is not 0-4",
        f"30_0.5_0_{TIMESTAMP}.jpg.chip.jpg": "a name field holds a dot",
    }
    for seed, name in enumerate(odd, start=2):
        write_jpeg(folder / name, seed)
    undecodable = b"30_0_0_\xff" + TIMESTAMP.encode() + b".jpg.chip.jpg"
    with open(os.path.join(os.fsencode(folder), undecodable), "wb") as f:
        f.write(write_jpeg(tmp_path / "x.jpg", seed=9))

    reasons = _reasons(folder, cache_file=tmp_path / "cache" / "manifest.csv")

    assert reasons[f"30_0_0_{TIMESTAMP}.jpg.chip.jpg"] == ""
    assert {name: reasons[name] for name in odd} == odd
    assert reasons[f"30_0_0_\\xff{TIMESTAMP}.jpg.chip.jpg"] == "name is not valid UTF-8"
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["manifest.csv"]  # no .tmp left
    assert _reasons(folder, cache_file=tmp_path / "cache" / "manifest.csv") == reasons


# --- images -------------------------------------------------------------------------------------


def _halves(path, **save) -> None:
    """A 32 x 32 image, white on the left and black on the right, as stored."""
    pixels = np.zeros((32, 32, 3), np.uint8)
    pixels[:, :16] = 255
    Image.fromarray(pixels).save(path, **save)


def test_exif_orientation_is_honoured(tmp_path):
    path = tmp_path / f"30_0_0_{TIMESTAMP}.jpg.chip.jpg"
    exif = Image.Exif()
    exif[0x0112] = 3  # shown rotated by 180 degrees
    _halves(path, format="JPEG", exif=exif)
    upright = load_image(path, 16)
    assert upright[:, :8].mean() < 20 and upright[:, 8:].mean() > 235


def test_sixteen_bit_png_is_scaled_not_saturated(tmp_path):
    path = tmp_path / f"30_0_0_{TIMESTAMP}.png"
    Image.fromarray(np.full((32, 32), 32768, np.uint16)).save(path)
    assert Image.open(path).mode == "I;16"
    assert np.abs(load_image(path, 16).astype(int) - 128).max() <= 1
    assert np.abs(load_image(path, 16, "L").astype(int) - 128).max() <= 1


def test_transparent_png_is_composited_on_mid_grey(tmp_path):
    path = tmp_path / f"30_0_0_{TIMESTAMP}.png"
    pixels = np.zeros((32, 32, 4), np.uint8)
    pixels[..., 0] = 255  # red, hidden: fully transparent
    pixels[:, :16] = (0, 0, 0, 255)  # opaque black on the left
    Image.fromarray(pixels, "RGBA").save(path)
    image = load_image(path, 16)
    assert image[:, :8].max() == 0
    np.testing.assert_array_equal(image[:, 8:], np.full((16, 8, 3), 128, np.uint8))  # mid grey


def _jpeg_declaring(width: int, height: int) -> bytes:
    """A small JPEG whose header declares `width` x `height` (the pixels are never reached)."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, format="JPEG")
    data = bytearray(buffer.getvalue())
    frame = data.index(b"\xff\xc0")
    data[frame + 5 : frame + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


@pytest.mark.parametrize("side", [12000, 20000])
def test_huge_images_are_refused_as_too_large_before_decoding(tmp_path, side):
    folder = tmp_path / "UTKFace"
    folder.mkdir()
    name = f"30_0_0_{TIMESTAMP}.jpg.chip.jpg"
    (folder / name).write_bytes(_jpeg_declaring(side, side))
    assert _reasons(folder) == {name: f"too large ({side} x {side} pixels; limit 40,000,000)"}


def test_images_the_cache_cannot_turn_upright_are_rejected(tmp_path, monkeypatch):
    folder = tmp_path / "UTKFace"
    write_jpeg(folder / f"30_0_0_{TIMESTAMP}.jpg.chip.jpg", seed=1)

    def broken(image, mode):
        raise OSError("bad EXIF")

    monkeypatch.setattr("agegender.data.manifest.as_mode", broken)
    assert set(_reasons(folder).values()) == {"truncated or corrupt image"}


# --- the committed split --------------------------------------------------------------------------


@pytest.fixture
def prepared(utkface_folder, project):
    """A project whose data was prepared once, with its split file written."""
    folder, _ = utkface_folder
    prepare(project, str(folder))
    return project


def _edit_split(path, edit) -> None:
    lines = path.read_text().splitlines(keepends=True)
    header = lines[0].rstrip("\n").split(",")
    row = next(i for i, line in enumerate(lines) if line.startswith("7") and ",test" in line)
    fields = dict(zip(header, lines[row].rstrip("\n").split(","), strict=True))
    lines[row : row + 1] = edit(fields, header)
    path.write_text("".join(lines))


def _row(fields, header, **changes) -> list[str]:
    return [",".join({**fields, **changes}[column] for column in header) + "\n"]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda f, h: _row(f, h, age="5"), r"age 5, expected 7\d"),
        (lambda f, h: _row(f, h, age="500"), r"age 500, expected 7\d"),
        (lambda f, h: _row(f, h, gender="7"), r"gender 7, expected [01]"),
        (lambda f, h: _row(f, h, split="train"), "split train, expected test"),
        (lambda f, h: _row(f, h) * 2, "lists a file more than once"),
    ],
    ids=["age-5", "age-500", "gender-7", "moved-row", "duplicated-row"],
)
def test_an_edited_split_file_is_refused_with_the_rows_and_the_fix(prepared, edit, expected):
    _edit_split(prepared.split_file, edit)
    with pytest.raises(AgegenderError, match=expected) as raised:
        prepare(prepared)
    message = str(raised.value)
    assert "line" in message
    assert "git checkout -- " in message and "agegender data prepare --new-split" in message


def test_an_intact_split_file_is_accepted_and_kept(prepared):
    committed = prepared.split_file.read_bytes()
    prepare(prepared)
    assert prepared.split_file.read_bytes() == committed


# --- caches ---------------------------------------------------------------------------------------


def test_a_truncated_manifest_cache_is_rebuilt_not_trusted(prepared):
    lines = prepared.manifest_cache.read_text().splitlines(keepends=True)
    prepared.manifest_cache.write_text("".join(lines[: len(lines) // 2]))
    data = prepare(prepared)  # today: "listed in the split but missing on disk"
    assert len(data.manifest) == len(list(prepared.images.iterdir()))
    fresh = prepare(prepared, new_split=True)
    assert len(fresh.split) == fresh.manifest["use"].sum() == 103


def _zero_pixels(image_cache, rows=slice(None)) -> None:
    pixels = np.load(image_cache.folder / "images.npy", mmap_mode="r+")
    pixels[rows] = 0
    pixels.flush()
    del pixels


def test_a_cache_whose_pixels_were_zeroed_is_rebuilt_when_opened(prepared):
    data = prepare(prepared)
    built = data.image_cache(16)
    expected = np.array(built.images)
    _zero_pixels(built)
    np.testing.assert_array_equal(data.image_cache(16).images, expected)


def test_prepare_checks_every_byte_of_the_caches(prepared):
    data = prepare(prepared)
    built = data.image_cache(16)
    expected = np.array(built.images)
    _zero_pixels(built, rows=1)  # not among the rows checked on every opening
    assert (built.folder / "images.npy").is_file()
    prepare(prepared)
    assert not built.folder.exists()
    np.testing.assert_array_equal(data.image_cache(16).images, expected)


def test_folders_of_killed_cache_builds_are_removed_on_the_next_run(prepared):
    cache_root = prepared.cache
    killed = cache_root / ".building-999999999-x1y2"  # no such process
    older = cache_root / ".building-k3j4l5"  # an older version's name, hours old
    running = cache_root / f".building-{os.getpid()}-a1b2"
    for folder in (killed, older, running):
        folder.mkdir(parents=True)
        (folder / "images.npy").write_bytes(b"\0" * 100)
    os.utime(older, (1, 1))
    prepare(prepared)
    assert not killed.exists() and not older.exists()
    assert running.exists()


# --- too little data ------------------------------------------------------------------------------


def test_a_split_of_three_images_is_refused_saying_how_many_it_needs(tmp_path, project):
    folder = tmp_path / "UTKFace"
    for seed, age in enumerate((25, 30, 35)):
        write_jpeg(folder / f"{age}_0_0_2017011617452512{seed}.jpg.chip.jpg", seed)
    with pytest.raises(AgegenderError, match=r"3 usable image\(s\) are too few .* at least 7"):
        prepare(project, str(folder))
    assert not project.split_file.exists()


def test_a_split_that_would_leave_a_set_empty_is_refused(tmp_path, project):
    folder = tmp_path / "UTKFace"
    for seed, age in enumerate((2, 15, 25, 45, 65, 70, 80, 90)):  # one or two per age band
        write_jpeg(folder / f"{age}_{seed % 2}_0_2017011617452512{seed}.jpg.chip.jpg", seed)
    with pytest.raises(AgegenderError, match="leaves val and test empty"):
        prepare(project, str(folder))


def test_a_folder_without_a_usable_image_says_why_each_file_was_rejected(tmp_path, project):
    folder = tmp_path / "UTKFace"
    for seed in range(3):
        write_jpeg(folder / f"abc_0_0_2017011617452512{seed}.jpg.chip.jpg", seed)
    (folder / "30_0_0_20170116174525125.jpg.chip.jpg").write_bytes(b"")
    message = "No usable images in .*: 4 file.*3 age is not a number; 1 empty file"
    with pytest.raises(AgegenderError, match=message):
        prepare(project, str(folder))


# --- where the data lives -------------------------------------------------------------------------


def test_a_relative_data_dir_names_the_same_folder_from_every_working_directory(
    project, monkeypatch
):
    monkeypatch.setenv("AGEGENDER_DATA_DIR", "elsewhere/data")
    (project.root / "book").mkdir()
    monkeypatch.chdir(project.root / "book")  # where the chapters' kernels run
    assert Paths.default().data == project.root / "elsewhere" / "data"
    monkeypatch.setenv("AGEGENDER_DATA_DIR", "/absolute/data")
    assert Paths.default().data == Path("/absolute/data")
