"""Small file helpers: atomic writes and checksums."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHUNK = 1 << 20


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` so that readers see the old file or the new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json_atomic(path: Path, payload: object) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def temporary_name(path: Path) -> Path:
    """A hidden name beside `path` for this process, with the same suffix (writers such as Keras'
    check it): ``.best.1234.tmp.keras`` for ``best.keras``."""
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield `temporary_name(path)` to write to; when the block succeeds, what was written there
    replaces `path` (nothing written: `path` is left as it is); when it fails, it is removed.
    Readers see the old file or the new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if tmp.exists():
        os.replace(tmp, path)


@contextmanager
def replacing_folder(folder: Path) -> Iterator[Path]:
    """Yield an empty hidden folder beside `folder` to fill; when the block succeeds, it replaces
    `folder` as a whole (readers see the old files or the new ones, never a mix; for an instant,
    no folder); when it fails, it is removed and `folder` is left as it was. What a killed
    process left beside `folder` is removed first."""
    for leftover in folder.parent.glob(f".{folder.name}.*.tmp"):
        shutil.rmtree(leftover, ignore_errors=True)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = folder.with_name(f".{folder.name}.{os.getpid()}.old.tmp")
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes (``"sha256"``, or ``"md5"`` for Keras' weights files)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    return file_digest(path, "sha256")


def list_files(folder: Path) -> list[tuple[str, int, int]]:
    """Every regular file under `folder`, sorted: (relative POSIX path, size, mtime in ns)."""
    found = []
    stack = [""]
    while stack:
        prefix = stack.pop()
        with os.scandir(folder / prefix if prefix else folder) as entries:
            for entry in entries:
                relative = f"{prefix}{entry.name}"
                if entry.is_dir(follow_symlinks=False):
                    stack.append(relative + "/")
                elif entry.is_file(follow_symlinks=False):
                    stat = entry.stat(follow_symlinks=False)
                    found.append((relative, stat.st_size, stat.st_mtime_ns))
    return sorted(found)


def rows_sha256(rows) -> str:
    """A sha256 naming which rows of the split a run used (as 64-bit integers, in order)."""
    import numpy as np

    return hashlib.sha256(np.asarray(rows, dtype=np.int64).tobytes()).hexdigest()


def json_sha256(payload) -> str:
    """A sha256 of a JSON-ready payload, independent of key order (fingerprints of runs)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def seeded_key(seed: int, key: str) -> str:
    """``sha256("seed:key")``: sorting by it gives an order that is the same on every machine,
    changes with the seed and, unlike a random draw, keeps each key's place as keys are added."""
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()
