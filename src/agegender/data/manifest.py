"""The manifest: one row per file in the images folder, saying whether and why it is used.

Every file is read once: its sha256 is taken, its name parsed into labels, and its image decoded in
full as the cache decodes it (truncated, empty, non-image and too large files, more than
`cache.MAX_PIXELS`, are rejected, and the scan goes on). The scan is kept in a cache file whose
first line holds the fingerprint of the files' names, sizes and mtimes and the sha256 of the rest,
so a truncated or edited cache is never trusted: the files are scanned again. Byte-identical
accepted files form duplicate groups, and the duplicate policy decides which rows the split uses:

- ``duplicates="one"`` (default): one representative per group, the first file by name;
  ``"all"``: every copy (the split then keeps each group inside one split).
- ``conflicts="exclude"`` (default): a group whose copies disagree on age, gender or race is left
  out entirely, since nobody can tell which label is right; ``"first"``: it is treated like a
  consistent group, taking the labels of its first file by name.
"""

from __future__ import annotations

import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from agegender.data.cache import as_mode, size_problem
from agegender.data.labels import InvalidName, parse_name
from agegender.files import list_files, write_text_atomic

DUPLICATE_POLICIES = ("one", "all")
CONFLICT_POLICIES = ("exclude", "first")
COLUMNS = [
    "file",
    "sha256",
    "age",
    "gender",
    "race",
    "status",
    "reason",
    "group",
    "group_size",
    "conflict",
    "use",
    "note",
]
GROUP_ID_LENGTH = 16


def scan(
    images: Path, *, cache_file: Path | None = None, workers: int | None = None
) -> pd.DataFrame:
    """Read every file under `images` once: checksum, labels from the name, full decode.

    Args:
        images: the images folder.
        cache_file: where to keep the scan; reused while no file's name, size or mtime changes.
        workers: decoding threads (default: the CPU count, at least 2).

    Returns:
        One row per file: file, sha256, age, gender, race, status (``accepted`` or
        ``rejected``), reason.
    """
    listing = list_files(images)
    fingerprint = _listing_fingerprint(images, listing)
    if cache_file is not None:
        cached = _read_scan_cache(cache_file, fingerprint)
        if cached is not None:
            return cached
    with ThreadPoolExecutor(workers or max(2, os.cpu_count() or 1)) as pool:
        files = [name for name, _, _ in listing]
        rows = list(
            tqdm(
                pool.map(_scan_file, files, [images] * len(files), chunksize=64),
                total=len(files),
                desc="check images",
                unit=" files",
                mininterval=1,
            )
        )
    table = _typed(pd.DataFrame(rows, columns=COLUMNS[:7]))
    if cache_file is not None:
        body = table.to_csv(index=False)
        write_text_atomic(cache_file, f"{fingerprint} {_sha256(body)}\n{body}")
    return table


def _listing_fingerprint(images: Path, listing: list) -> str:
    # names with undecodable bytes hold surrogates: encode them back to the bytes on disk
    text = f"scan-v2|{images.resolve()}|{listing}"
    return _sha256(text.encode("utf-8", "surrogateescape"))


def _read_scan_cache(cache_file: Path, fingerprint: str) -> pd.DataFrame | None:
    """The cached scan when it is of these files and whole (its checksum holds); else None."""
    try:
        header, _, body = cache_file.read_text().partition("\n")
    except (OSError, UnicodeDecodeError):
        return None
    if header != f"{fingerprint} {_sha256(body)}":
        return None  # other files, a truncated or edited cache, or an older format: scan again
    table = pd.read_csv(
        io.StringIO(body),
        dtype={"reason": "string"},
        keep_default_na=False,
        na_values={"age": [""], "gender": [""], "race": [""]},
    )
    return _typed(table)


def _sha256(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def apply_duplicate_policy(
    scanned: pd.DataFrame, *, duplicates: str = "one", conflicts: str = "exclude"
) -> pd.DataFrame:
    """Group byte-identical accepted files and mark which rows the split uses.

    Args:
        scanned: the output of `scan`.
        duplicates: ``"one"`` or ``"all"`` (see the module docstring).
        conflicts: ``"exclude"`` or ``"first"``.

    Returns:
        The manifest with `COLUMNS`: ``group`` (sha256 prefix), ``group_size``, ``conflict``,
        ``use`` (goes into the split) and ``note`` (why an accepted file is not used).
    """
    if duplicates not in DUPLICATE_POLICIES:
        raise ValueError(f"duplicates must be one of {DUPLICATE_POLICIES}. Received: {duplicates=}")
    if conflicts not in CONFLICT_POLICIES:
        raise ValueError(f"conflicts must be one of {CONFLICT_POLICIES}. Received: {conflicts=}")
    table = scanned.sort_values("file", ignore_index=True)
    accepted = table["status"] == "accepted"
    table["group"] = table["sha256"].str[:GROUP_ID_LENGTH].where(accepted, "")
    by_group = table[accepted].groupby("sha256")
    table["group_size"] = by_group["file"].transform("size").reindex(table.index).fillna(0)
    labels = (
        table["age"].astype(str)
        + "/"
        + table["gender"].astype(str)
        + "/"
        + table["race"].astype(str)
    )
    distinct = labels[accepted].groupby(table.loc[accepted, "sha256"]).transform("nunique")
    table["conflict"] = (distinct.reindex(table.index).fillna(1) > 1).astype(bool)
    first_in_group = accepted & ~table.loc[accepted, "sha256"].duplicated().reindex(
        table.index, fill_value=True
    )

    use = accepted if duplicates == "all" else first_in_group
    note = pd.Series("", index=table.index, dtype="string")
    if duplicates == "one":
        first_file = table[first_in_group].set_index("sha256")["file"]
        copies = accepted & ~first_in_group
        note[copies] = "copy of " + table.loc[copies, "sha256"].map(first_file)
    if conflicts == "exclude":
        use = use & ~table["conflict"]
        note[accepted & table["conflict"]] = "duplicate group with conflicting labels"
    elif duplicates == "all":
        # the first file's labels stand for the whole group
        for column in ("age", "gender", "race"):
            table[column] = table[column].where(~accepted, by_group[column].transform("first"))
    table["use"] = use.astype(bool)
    table["note"] = note
    table["group_size"] = table["group_size"].astype(int)
    return table[COLUMNS]


def dataset_fingerprint(manifest: pd.DataFrame) -> str:
    """sha256 over the sorted (sha256, file) pairs: names the exact set of files on disk."""
    listing = "".join(
        f"{h}  {f}\n" for f, h in sorted(zip(manifest["file"], manifest["sha256"], strict=True))
    )
    return hashlib.sha256(listing.encode()).hexdigest()


def _scan_file(name: str, images: Path) -> tuple:
    data = (images / name).read_bytes()
    sha256 = _sha256(data)
    # a name with undecodable bytes is recorded with them escaped (\xff), so the manifest is text
    shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    try:
        labels = parse_name(name.rsplit("/", 1)[-1])
    except InvalidName as error:
        return shown, sha256, None, None, None, "rejected", error.reason
    reason = _decode_problem(data)
    status = "rejected" if reason else "accepted"
    return name, sha256, labels.age, labels.gender, labels.race, status, reason


def _decode_problem(data: bytes) -> str:
    """Empty when the bytes decode to a whole image as the cache decodes it; otherwise why not."""
    if not data:
        return "empty file"
    size = _declared_size(data)
    if size is not None and (problem := size_problem(*size)):
        return problem
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            as_mode(image, "RGB")
    except UnidentifiedImageError:
        return "not a readable image"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return "truncated or corrupt image"
    return ""


def _declared_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the image's header, read as `Image.open` reads them but without
    Pillow's decompression-bomb limit, so that a huge image is called too large, not corrupt."""
    Image.init()
    for format_id in Image.ID:
        factory, accept = Image.OPEN[format_id]
        if accept and not accept(data[:16]):
            continue
        try:
            with factory(io.BytesIO(data), "") as image:
                return image.size
        except Exception:  # any failure means "not this format"; the full decode decides
            continue
    return None


def _typed(table: pd.DataFrame) -> pd.DataFrame:
    for column in ("age", "gender", "race"):
        table[column] = pd.to_numeric(table[column]).astype("Int64")
    table["reason"] = table["reason"].fillna("").astype("string")
    return table
