"""Damaged, edited, stale or odd data is checked and used, or refused with what to do (issue 14)."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image
from support import write_jpeg

from agegender.data.cache import load_image
from agegender.data.manifest import scan

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
