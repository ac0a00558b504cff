"""Decode and resize each image once per (size, colour) into a uint8 memory-mapped array.

A cache lives in ``<cache>/images-<size>px-<colour>-<key>/`` as ``images.npy`` (N, size, size,
channels) plus ``meta.json`` (row order, key, timing). The key hashes the (file, sha256) rows it
was built from, so a changed split or changed images give a new cache; an older cache of the same
size and colour is then deleted. It is built in a temporary folder and renamed into place, so an
interrupted build is never mistaken for a finished one. Opening it maps the file without reading it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps
from tqdm import tqdm

from agegender.errors import DataError
from agegender.files import write_json_atomic

COLORS = {"rgb": ("RGB", 3), "grey": ("L", 1)}
FORMAT_VERSION = 2  # 2: EXIF orientation, 16-bit scaling and transparency handled
# Larger images are refused by the manifest before they are decoded: 40 million pixels take 120 MB
# as RGB (per decoding thread); faces need far fewer (UTKFace's are 200 x 200).
MAX_PIXELS = 40_000_000
BACKGROUND = (128, 128, 128)  # mid grey: what transparent pixels become
WRITE_CHUNK = 512  # images decoded in parallel, then written in order


@dataclass(frozen=True)
class ImageCache:
    """A built cache: `images[i]` is the image of `files[i]`."""

    folder: Path
    files: np.ndarray
    images: np.ndarray  # read-only memmap, uint8 (N, size, size, channels)
    meta: dict

    @property
    def size(self) -> int:
        return self.images.shape[1]


def cache_key(table: pd.DataFrame, size: int, color: str) -> str:
    rows = "".join(f"{f}:{h}\n" for f, h in zip(table["file"], table["sha256"], strict=True))
    return hashlib.sha256(f"v{FORMAT_VERSION}|{size}|{color}|{rows}".encode()).hexdigest()


def build_image_cache(
    table: pd.DataFrame,
    images: Path,
    cache_root: Path,
    *,
    size: int,
    color: str = "rgb",
    workers: int | None = None,
) -> ImageCache:
    """Return the cache of `table`'s images at `size` px, building it when it does not exist yet.

    Args:
        table: rows with ``file`` and ``sha256`` (the split, or a subset of it); row order is kept.
        images: the folder the files are in.
        cache_root: the folder that holds caches.
        size: the side of the square images, in pixels.
        color: ``"rgb"`` or ``"grey"``.
        workers: decoding threads (default: the CPU count; more only adds contention).

    Returns:
        The opened `ImageCache`.
    """
    if color not in COLORS:
        raise ValueError(f"color must be one of {tuple(COLORS)}. Received: color={color!r}")
    if not isinstance(size, int) or not 8 <= size <= 1024:
        raise ValueError(f"size must be an integer from 8 to 1024. Received: size={size!r}")
    key = cache_key(table, size, color)
    prefix = f"images-{size}px-{color}-"
    folder = cache_root / f"{prefix}{key[:16]}"
    if (folder / "meta.json").is_file():
        return open_image_cache(folder)

    cache_root.mkdir(parents=True, exist_ok=True)
    files = table["file"].tolist()
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=cache_root))
    try:
        _decode_into(
            tmp / "images.npy",
            [images / f for f in files],
            size,
            color,
            workers or os.cpu_count() or 1,
        )
        write_json_atomic(
            tmp / "meta.json",
            {
                "format": FORMAT_VERSION,
                "key": key,
                "size": size,
                "color": color,
                "count": len(files),
                "build_seconds": round(time.perf_counter() - started, 3),
                "files": files,
            },
        )
        for stale in cache_root.glob(f"{prefix}*"):
            shutil.rmtree(stale, ignore_errors=True)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return open_image_cache(folder)


def _decode_into(path: Path, files: list[Path], size: int, color: str, workers: int) -> None:
    """Write the decoded images to a new .npy file chunk by chunk, so memory stays flat."""
    mode, channels = COLORS[color]
    header = np.lib.format.open_memmap(
        path, mode="w+", dtype=np.uint8, shape=(len(files), size, size, channels)
    )
    offset = header.offset
    del header  # only the file, with its header and full length, was needed

    def decode(file: Path) -> np.ndarray:
        return load_image(file, size, mode)

    with (
        open(path, "r+b") as out,
        ThreadPoolExecutor(workers) as pool,
        tqdm(
            total=len(files), desc=f"cache {size}px {color}", unit=" images", mininterval=1
        ) as bar,
    ):
        out.seek(offset)
        for start in range(0, len(files), WRITE_CHUNK):
            chunk = list(pool.map(decode, files[start : start + WRITE_CHUNK]))
            out.write(np.stack(chunk).tobytes())
            bar.update(len(chunk))


def open_image_cache(folder: Path) -> ImageCache:
    """Map a built cache without reading its pixels."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        images = np.load(folder / "images.npy", mmap_mode="r")
    except (OSError, ValueError) as error:
        raise DataError(
            f"The image cache {folder} is unreadable ({error}); delete it to rebuild."
        ) from error
    if images.shape[0] != len(meta["files"]):
        raise DataError(f"The image cache {folder} is inconsistent; delete it to rebuild.")
    return ImageCache(folder=folder, files=np.asarray(meta["files"]), images=images, meta=meta)


def size_problem(width: int, height: int) -> str:
    """Empty when an image of this size may be decoded; otherwise why not."""
    if width * height <= MAX_PIXELS:
        return ""
    return f"too large ({width} x {height} pixels; limit {MAX_PIXELS:,})"


def as_mode(image: Image.Image, mode: str) -> Image.Image:
    """`image` as it is meant to be seen, in `mode` (``"RGB"`` or ``"L"``).

    Turned upright by its EXIF orientation; 16-bit samples scaled to 8 bits (not clipped to white);
    transparent pixels composited on mid grey (`BACKGROUND`), neutral for faces of any colour.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I;16"):
        pixels = np.asarray(image, dtype=np.uint16) >> 8
        image = Image.fromarray(pixels.astype(np.uint8), "L")
    if image.has_transparency_data:
        background = Image.new("RGBA", image.size, (*BACKGROUND, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert(mode)


def load_image(path: Path, size: int, mode: str = "RGB") -> np.ndarray:
    """Decode one image to a uint8 (size, size[, channels]) array; JPEGs shrink while decoding."""
    with Image.open(path) as image:
        image.draft(mode, (size, size))  # JPEG: decode at the smallest scale that is >= size
        image = as_mode(image, mode)
        if image.size != (size, size):
            # BOX = area averaging: the right filter for shrinking, and faster than bilinear here
            image = image.resize((size, size), Image.Resampling.BOX)
        return np.asarray(image, dtype=np.uint8)
