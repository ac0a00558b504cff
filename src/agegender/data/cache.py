"""Decode and resize each image once per (size, colour) into a uint8 memory-mapped array.

A cache lives in ``<cache>/images-<size>px-<colour>-<key>/`` as ``images.npy`` (N, size, size,
channels) plus ``meta.json`` (row order, key, timing). The key hashes the (file, sha256) rows it
was built from, so a changed split or changed images give a new cache; an older cache of the same
size and colour is then deleted. It is built in a temporary folder and renamed into place, so an
interrupted build is never mistaken for a finished one; the folder of a build whose process is gone
(``.building-<pid>-*``) is removed by the next build or `check_caches`.

``meta.json`` records the sha256 of all the pixels and of a sample of rows. Opening a cache checks
the sample (`SAMPLE_ROWS` rows, at most 10 MB, so damage such as zeroed pixels is caught cheaply);
`check_caches`, run by `dataset.prepare`, checks every byte (about a second per GB). A cache that
fails is rebuilt.
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
SAMPLE_ROWS = 64  # rows whose digest is checked each time a cache is opened
BUILDING = ".building-"
OLD_BUILD_SECONDS = 3600  # a build folder without a process id is stale after this long


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


def _open_if_intact(folder: Path) -> ImageCache | None:
    """The cache in `folder` when it is there and verifies; a damaged one is removed (None)."""
    if not (folder / "meta.json").is_file():
        return None
    try:
        return open_image_cache(folder)
    except DataError as error:
        print(f"note: {error}; rebuilding it")
        shutil.rmtree(folder, ignore_errors=True)
        return None


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
    remove_stale_builds(cache_root)
    existing = _open_if_intact(folder)
    if existing is not None:
        return existing
    cache_root.mkdir(parents=True, exist_ok=True)
    files = table["file"].tolist()
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f"{BUILDING}{os.getpid()}-", dir=cache_root))
    try:
        pixels_sha256 = _decode_into(
            tmp / "images.npy",
            [images / f for f in files],
            size,
            color,
            workers or os.cpu_count() or 1,
        )
        built = np.load(tmp / "images.npy", mmap_mode="r")
        write_json_atomic(
            tmp / "meta.json",
            {
                "format": FORMAT_VERSION,
                "key": key,
                "size": size,
                "color": color,
                "count": len(files),
                "build_seconds": round(time.perf_counter() - started, 3),
                "pixels_sha256": pixels_sha256,
                "sample_sha256": _sample_sha256(built),
                "files": files,
            },
        )
        del built
        for stale in cache_root.glob(f"{prefix}*"):
            shutil.rmtree(stale, ignore_errors=True)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return open_image_cache(folder)


def remove_stale_builds(cache_root: Path) -> list[Path]:
    """Remove the folders of builds whose process is gone (killed); returns them."""
    stale = [build for build in cache_root.glob(f"{BUILDING}*") if not _build_is_running(build)]
    for build in stale:
        shutil.rmtree(build, ignore_errors=True)
    return stale


def _build_is_running(build: Path) -> bool:
    pid = build.name[len(BUILDING) :].split("-", 1)[0]
    if not pid.isdecimal():  # named by an older version, without its process id
        return time.time() - build.stat().st_mtime < OLD_BUILD_SECONDS
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _decode_into(path: Path, files: list[Path], size: int, color: str, workers: int) -> str:
    """Write the decoded images to a new .npy file chunk by chunk, so memory stays flat; returns
    the sha256 of the pixels."""
    mode, channels = COLORS[color]
    header = np.lib.format.open_memmap(
        path, mode="w+", dtype=np.uint8, shape=(len(files), size, size, channels)
    )
    offset = header.offset
    del header  # only the file, with its header and full length, was needed

    def decode(file: Path) -> np.ndarray:
        return load_image(file, size, mode)

    digest = hashlib.sha256()
    with (
        open(path, "r+b") as out,
        ThreadPoolExecutor(workers) as pool,
        tqdm(
            total=len(files), desc=f"cache {size}px {color}", unit=" images", mininterval=1
        ) as bar,
    ):
        out.seek(offset)
        for start in range(0, len(files), WRITE_CHUNK):
            chunk = np.stack(list(pool.map(decode, files[start : start + WRITE_CHUNK])))
            out.write(chunk.tobytes())
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def open_image_cache(folder: Path, *, full_check: bool = False) -> ImageCache:
    """Map a built cache, checking the digest of a sample of its rows (of all, with `full_check`).

    Raises:
        DataError: the cache is unreadable, inconsistent or damaged.
    """
    try:
        meta = json.loads((folder / "meta.json").read_text())
        images = np.load(folder / "images.npy", mmap_mode="r")
    except (OSError, ValueError) as error:
        raise DataError(
            f"The image cache {folder} is unreadable ({error}); delete it to rebuild."
        ) from error
    if images.shape[0] != len(meta["files"]):
        raise DataError(f"The image cache {folder} is inconsistent; delete it to rebuild.")
    digests = {"sample_sha256": _sample_sha256}
    if full_check:
        digests["pixels_sha256"] = _pixels_sha256
    for name, digest in digests.items():
        if meta.get(name) != digest(images):
            raise DataError(
                f"The image cache {folder} is damaged or of an older version (its {name} is "
                "not the one recorded when it was built); delete it to rebuild."
            )
    return ImageCache(folder=folder, files=np.asarray(meta["files"]), images=images, meta=meta)


def check_caches(cache_root: Path) -> list[Path]:
    """Check every byte of every image cache; remove those that fail (they are rebuilt when next
    used) and the folders of killed builds. Returns what was removed."""
    removed = remove_stale_builds(cache_root)
    for folder in sorted(cache_root.glob("images-*")):
        try:
            open_image_cache(folder, full_check=True)
        except DataError as error:
            print(f"note: {error}; removed, it is rebuilt when next used")
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _sample_sha256(images: np.ndarray) -> str:
    rows = np.unique(np.linspace(0, len(images) - 1, min(len(images), SAMPLE_ROWS)).astype(int))
    return hashlib.sha256(np.ascontiguousarray(images[rows])).hexdigest()


def _pixels_sha256(images: np.ndarray) -> str:
    digest = hashlib.sha256()
    for start in range(0, len(images), WRITE_CHUNK):
        digest.update(np.ascontiguousarray(images[start : start + WRITE_CHUNK]))
    return digest.hexdigest()


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
