"""Throughput figures for `agegender bench`. Timings belong here, never in tests."""

from __future__ import annotations

import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL
from PIL import features

from agegender.data.cache import build_image_cache, open_image_cache
from agegender.data.dataset import UTKFace


def bench_data(data: UTKFace, *, size: int = 128) -> dict:
    """Decode throughput of a fresh cache build, and the cost of reloading the built cache.

    The build goes into a temporary folder, so the project's own cache is left alone.
    """
    data.paths.data.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".bench-", dir=data.paths.data) as tmp:
        started = time.perf_counter()
        built = build_image_cache(data.split, data.paths.images, Path(tmp), size=size)
        decode_seconds = time.perf_counter() - started
        build_peak_rss = _peak_rss_mib()

        started = time.perf_counter()
        reopened = open_image_cache(built.folder)
        open_seconds = time.perf_counter() - started
        started = time.perf_counter()
        checksum = int(np.asarray(reopened.images).sum(dtype=np.uint64))
        read_seconds = time.perf_counter() - started
    images = len(data.split)
    return {
        "images": images,
        "size": size,
        "decode_images_per_s": round(images / decode_seconds, 1),
        "decode_seconds": round(decode_seconds, 2),
        "cache_bytes": int(reopened.images.nbytes),
        "build_peak_rss_mib": build_peak_rss,
        "reload_open_seconds": round(open_seconds, 4),
        "reload_read_all_seconds": round(read_seconds, 3),
        "pixel_checksum": checksum,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "pillow": PIL.__version__,
        "libjpeg_turbo": bool(features.check_feature("libjpeg_turbo")),
        "machine": platform.machine(),
    }


def _peak_rss_mib() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
