"""Get UTKFace's images into `data/raw/UTKFace`: from a folder, an archive, a URL or Kaggle.

The images folder appears only when it is complete: everything is unpacked or copied into a
staging folder beside it and renamed into place at the end, so an interrupted run leaves no
half-filled `UTKFace/` behind. Archives are checked member by member before anything is written:
absolute paths, `..` components, links, device files and names given twice are refused; an
archive is read to its end (so gzip checks its CRC), and one that is damaged is refused whole.
Downloads become the kept archive only once they read as one; links in a folder are never followed.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import Request, urlopen

from tqdm import tqdm

from agegender import platforms
from agegender.config import Paths
from agegender.data.labels import IMAGE_SUFFIXES
from agegender.errors import DataError
from agegender.files import CHUNK, file_sha256, json_sha256, list_files, write_json_atomic

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
KAGGLE_PREFIX = "kaggle:"
# Python's own extraction checks, where this Python has them (3.11.4+), on top of ours.
_TAR_FILTER = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
_UNSAFE_ERRORS = (tarfile.FilterError,) if hasattr(tarfile, "FilterError") else ()
# What reading a truncated, corrupted or mislabelled archive raises.
_DAMAGE_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, gzip.BadGzipFile)

HOW_TO_PROVIDE = """\
UTKFace was not found. Provide it in one of these ways:
  - agegender data prepare --source PATH_OR_URL  (or set UTKFACE_SOURCE), where the source is
      a folder of UTKFace JPEGs, a .tar.gz/.tgz/.zip archive of them (as UTKFace is distributed),
      an http(s) URL of such an archive (append #sha256=HEX to check it), or
      kaggle:OWNER/DATASET (needs `pip install "agegender[kaggle]"` and Kaggle credentials);
  - place the images in {images};
  - on Kaggle, attach a UTKFace dataset to the notebook (on Colab and Kaggle, without one, the
      public copy {kaggle} is fetched with kagglehub)."""


class DamagedArchive(DataError):
    """An archive that does not read to its end: truncated, corrupted or not an archive at all."""


def prepare_images(paths: Paths, source: str | None = None, *, sha256: str | None = None) -> Path:
    """Make `paths.images` hold the UTKFace images, fetching or unpacking them when needed.

    Args:
        paths: the project's folders.
        source: a folder, an archive, an http(s) URL or ``kaggle:OWNER/DATASET``; default
            `$UTKFACE_SOURCE`, then an already prepared `paths.images`, then
            `platforms.default_source` (Kaggle's inputs; the public Kaggle copy on Colab/Kaggle).
        sha256: the expected checksum of the source archive, downloaded or local (default
            `$UTKFACE_SHA256`, then `#sha256=` in the URL).

    Returns:
        `paths.images`.
    """
    source = source or os.environ.get("UTKFACE_SOURCE") or None
    if source is None:
        if paths.images.is_dir():
            return paths.images
        source = _default_source(paths)

    expected = _expected_sha256(source, sha256)
    identity = _source_identity(source)
    if paths.images.is_dir() and _prepared_from(_read_stamp(paths), identity, expected):
        return paths.images

    local = _fetch_source(source, paths, expected)
    folder, left_out = _install_checked(local, source, paths)
    stamp = {
        "source": source,
        "identity": identity,
        "sha256": expected,
        "folder": folder,
        "files": _count_files(paths.images),
        "files_left_outside_folder": left_out,
    }
    write_json_atomic(paths.images_stamp, stamp)
    if left_out:
        print(
            f"note: {left_out} file(s) in the source lie outside its image folder "
            f"{stamp['folder']!r} and were not used"
        )
    return paths.images


def _prepared_from(stamp: dict, identity: str, sha256: str | None) -> bool:
    """Whether the prepared images came from this source, checked against `sha256` if given."""
    return stamp.get("identity") == identity and sha256 in (None, stamp.get("sha256"))


def _default_source(paths: Paths) -> str:
    source = platforms.default_source()
    if source is None:
        raise DataError(_how_to_provide(paths))
    return source


def _expected_sha256(source: str, sha256: str | None) -> str | None:
    """The checksum the source archive must have, in lower case, or None when none was given."""
    fragment = source.partition("#")[2] if source.startswith(("http://", "https://")) else ""
    given = sha256 or os.environ.get("UTKFACE_SHA256") or fragment.removeprefix("sha256=")
    given = given.strip().lower()
    if given and not re.fullmatch(r"[0-9a-f]{64}", given):
        raise DataError(
            f"{given!r} is not a sha256 (64 hexadecimal digits): pass the archive's published "
            "checksum with --sha256 (or UTKFACE_SHA256), or leave it out."
        )
    return given or None


def _fetch_source(source: str, paths: Paths, sha256: str | None) -> Path:
    """The source as a local folder or archive, downloaded first when it is a URL or on Kaggle;
    a local archive is checked against `sha256` when given."""
    if source.startswith(("http://", "https://")):
        return download(source.partition("#")[0], paths.downloads, sha256=sha256)
    if source.startswith(KAGGLE_PREFIX):
        local = _kaggle_download(source.removeprefix(KAGGLE_PREFIX))
    else:
        local = Path(source).expanduser()
    if not local.exists():
        raise DataError(f"The data source does not exist: {local}\n\n" + _how_to_provide(paths))
    if sha256 is not None:
        _check_local_sha256(local, sha256)
    return local


def _check_local_sha256(local: Path, sha256: str) -> None:
    if local.is_dir():
        raise DataError(
            f"A sha256 was given, but the data source {local} is a folder: a sha256 checks an "
            "archive. Pass the archive itself, or leave out --sha256 (and UTKFACE_SHA256)."
        )
    if (actual := file_sha256(local)) != sha256:
        raise DataError(
            f"Checksum mismatch for {local}: expected sha256 {sha256}, got {actual}. This is not "
            "the archive expected: download it again, or check the checksum you passed."
        )


def _install_checked(local: Path, source: str, paths: Paths) -> tuple[str, int]:
    """`_install_images`, deleting a kept download that turns out damaged so the next run
    fetches it again (a user's own archive is never deleted)."""
    try:
        return _install_images(local, source, paths)
    except DamagedArchive as error:
        if local.parent != paths.downloads:
            raise
        local.unlink(missing_ok=True)
        raise DamagedArchive(
            f"{error}\nThe downloaded copy {local} was deleted: run again to download it anew."
        ) from error


def _install_images(local: Path, source: str, paths: Paths) -> tuple[str, int]:
    """Put the image folder found in `local` at `paths.images`, through a staging folder.

    Returns:
        The image folder's path inside `local`, and the number of files left outside it.
    """
    paths.raw.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(paths.raw)
    with tempfile.TemporaryDirectory(prefix=".staging-", dir=paths.raw) as staging:
        staging = Path(staging)
        unpacked = _unpack(local, staging)
        found = _image_folder(unpacked)
        if found is None:
            raise DataError(f"No image files ({', '.join(IMAGE_SUFFIXES)}) found in {source}.")
        left_out = _count_files(unpacked) - _count_files(found)
        complete = staging / "UTKFace"
        if found.is_relative_to(staging):
            found.rename(complete)
        else:
            _copy_plain_files(found, complete)
        _replace_dir(complete, paths.images)
    return str(found.relative_to(unpacked)), left_out


def _remove_stale_staging(raw: Path) -> None:
    """Remove the staging folders of runs that were killed (one run prepares a folder at a time)."""
    for stale in raw.glob(".staging-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _copy_plain_files(source: Path, dest: Path) -> None:
    """Copy the folder `source` to `dest`, leaving out links and special files with a note: a link
    is never followed, since it could name any file on this machine."""
    left_out: list[str] = []

    def odd_entries(folder: str, names: list[str]) -> list[str]:
        odd = [name for name in names if not _is_plain(Path(folder, name))]
        left_out.extend(str(Path(folder, name).relative_to(source)) for name in odd)
        return odd

    shutil.copytree(source, dest, ignore=odd_entries)
    if left_out:
        print(
            f"note: {len(left_out)} link(s) or special file(s) in {source} were left out (links "
            f"are never followed; copy the files themselves to use them): {left_out[0]!r}, ..."
        )


def _is_plain(path: Path) -> bool:
    mode = path.lstat().st_mode
    return stat.S_ISREG(mode) or stat.S_ISDIR(mode)


def _unpack(local: Path, staging: Path) -> Path:
    """`local` itself when it is a folder, else the folder in `staging` it is extracted to."""
    if local.is_dir():
        return local
    if local.name.lower().endswith(ARCHIVE_SUFFIXES):
        unpacked = staging / "unpacked"
        extract_archive(local, unpacked)
        return unpacked
    raise DataError(
        f"Unsupported data source {local.name!r}: expected a folder or one of "
        f"{', '.join(ARCHIVE_SUFFIXES)}."
    )


def extract_archive(archive: Path, dest: Path) -> None:
    """Unpack a .tar(.gz)/.tgz/.zip archive into a new folder `dest`, refusing unsafe members.

    Raises:
        DamagedArchive: for an archive that does not read to its end (truncated, corrupted).
        DataError: for a member that would escape `dest` (absolute path, ``..``, a link or a
            device) or a name given twice; nothing is left in `dest` then.
    """
    dest.mkdir(parents=True)
    try:
        _extract(archive, dest)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def _extract(archive: Path, dest: Path) -> None:
    try:
        if archive.name.lower().endswith(".zip"):
            _extract_zip(archive, dest)
        else:
            _extract_tar(archive, dest)
    except _UNSAFE_ERRORS as error:
        raise DataError(f"Refusing an unsafe archive {archive}: {error}") from error
    except _DAMAGE_ERRORS as error:
        raise DamagedArchive(
            f"Cannot unpack {archive}: the archive is damaged ({_reason(error)}); nothing was "
            "kept from it. Download it again (with --sha256 and its published checksum, to check "
            "the copy)."
        ) from error
    except OSError as error:
        raise DataError(f"Cannot unpack {archive}: {error}") from error


def _reason(error: BaseException) -> str:
    return str(error) or type(error).__name__


def _check_member_name(name: str) -> None:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or (path.parts and ":" in path.parts[0]) or ".." in path.parts:
        raise DataError(
            f"Refusing an unsafe archive: member {name!r} would be written outside "
            "the target folder."
        )


def _check_unique(name: str, seen: set[str]) -> None:
    """Refuse a file name met before in the archive: unpacking would keep only the last copy."""
    key = str(PurePosixPath(name.replace("\\", "/")))
    if key in seen:
        raise DataError(
            f"Refusing an archive that holds the file {name!r} twice: only one copy could be "
            "kept, and which one is meant is unclear. Use the archive as published, or remove "
            "the duplicate."
        )
    seen.add(key)


def _extract_tar(archive: Path, dest: Path) -> None:
    seen: set[str] = set()
    with tarfile.open(archive, mode=_tar_mode(archive)) as tar:
        for member in tqdm(tar, desc=f"unpack {archive.name}", unit=" files", mininterval=1):
            _check_tar_member(member, seen)
            tar.extract(member, dest, **_TAR_FILTER)
        _check_tar_end(tar)


def _tar_mode(archive: Path) -> str:
    """Read as the name says: gzip for .tar.gz and .tgz, plain for .tar."""
    return "r:" if archive.name.lower().endswith(".tar") else "r:gz"


def _check_tar_member(member: tarfile.TarInfo, seen: set[str]) -> None:
    _check_member_name(member.name)
    if not (member.isfile() or member.isdir()):
        raise DataError(
            f"Refusing an unsafe archive: member {member.name!r} is a link or special file."
        )
    if member.isfile():
        _check_unique(member.name, seen)


def _check_tar_end(tar: tarfile.TarFile) -> None:
    """Refuse a tar whose members stop early. tarfile takes an unreadable header for the end of
    the archive, so what follows the last member must be zeros (the end marker and padding);
    reading it to the end also makes gzip check its CRC."""
    tar.fileobj.seek(tar.offset)
    while chunk := tar.fileobj.read(CHUNK):
        if chunk.strip(b"\0"):
            raise tarfile.ReadError(f"unreadable member header at byte {tar.offset}")


def _extract_zip(archive: Path, dest: Path) -> None:
    seen: set[str] = set()
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        for info in members:
            _check_zip_member(info, seen)
        for info in tqdm(members, desc=f"unpack {archive.name}", unit=" files", mininterval=1):
            zf.extract(info, dest)  # reads the member whole, so its CRC is checked


def _check_zip_member(info: zipfile.ZipInfo, seen: set[str]) -> None:
    _check_member_name(info.filename)
    if (info.external_attr >> 16) & 0o170000 == 0o120000:
        raise DataError(f"Refusing an unsafe archive: member {info.filename!r} is a link.")
    if not info.is_dir():
        _check_unique(info.filename, seen)


def archive_problem(archive: Path) -> str | None:
    """Why `archive` does not read to its end as the archive its name says, or None when it does
    (every member read, CRCs checked, nothing written)."""
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                bad = zf.testzip()
            return None if bad is None else f"member {bad!r} is damaged"
        with tarfile.open(archive, mode=_tar_mode(archive)) as tar:
            for _ in tar:
                pass
            _check_tar_end(tar)
    except _DAMAGE_ERRORS as error:
        return _reason(error)
    return None


def download(url: str, folder: Path, *, sha256: str | None = None) -> Path:
    """Stream `url` into `folder`, resuming a partial download, and check its sha256 when given.

    Returns:
        The downloaded file; the partial `.part` file becomes it only once complete and checked:
        its sha256 when given, and that it reads as the archive its name says. A resumed `.part`
        that fails the check (the bytes it held were not the start of this file) is fetched again
        from the start, once.
    """
    name = PurePosixPath(urlsplit(url).path).name or "UTKFace.tar.gz"
    final = folder / name
    if final.is_file() and (sha256 is None or file_sha256(final) == sha256.lower()):
        return final
    folder.mkdir(parents=True, exist_ok=True)
    part = final.with_name(final.name + ".part")
    resumed = part.is_file()
    problem = _fetch_and_check(url, part, name, sha256)
    if problem and resumed:
        print(f"note: the resumed download is unusable ({problem}); fetching it from the start")
        part.unlink()
        problem = _fetch_and_check(url, part, name, sha256)
    if problem:
        part.unlink()
        raise DataError(f"{problem} The download was deleted: check the URL, then run again.")
    os.replace(part, final)
    return final


def _fetch_and_check(url: str, part: Path, name: str, sha256: str | None) -> str | None:
    """Fetch `url` into `part`; what makes it unusable, or None when it is the archive wanted."""
    _download_part(url, part, name)
    if sha256 and (actual := file_sha256(part)) != sha256.lower():
        return f"Checksum mismatch for {url}: expected sha256 {sha256}, got {actual}."
    if not name.lower().endswith(ARCHIVE_SUFFIXES):
        return None  # not an archive name: unpacking refuses it with the supported kinds
    problem = archive_problem(part)
    if problem is None:
        return None
    if _is_html(part):
        problem = "it is a web page: check that the URL gives the archive itself, not a page"
    return f"What {url} gave is not a readable {name} archive ({problem})."


def _is_html(path: Path) -> bool:
    with open(path, "rb") as f:
        start = f.read(512).lstrip().lower()
    return start.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body"))


def _download_part(url: str, part: Path, name: str) -> None:
    """Fetch `url` into `part`, continuing after the bytes a previous attempt left in it."""
    done = part.stat().st_size if part.is_file() else 0
    request = Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    try:
        with urlopen(request, timeout=60) as response:
            total = _write_response(response, part, done, name)
        if total is not None and part.stat().st_size < total:
            raise ConnectionError(
                f"the connection closed after {part.stat().st_size} of {total} bytes"
            )
    except HTTPError as error:
        if error.code != 416 or not done:  # 416 on a resume: nothing left; the part's check decides
            raise DataError(
                f"Download failed: {url} answered HTTP {error.code} {error.reason}."
            ) from error
    except (URLError, TimeoutError, ConnectionError, http.client.HTTPException) as error:
        raise DataError(
            f"Cannot download {url}: {error}. The partial file {part} is kept; run "
            "again to resume, or download the archive yourself and pass its path."
        ) from error


def _write_response(
    response: http.client.HTTPResponse, part: Path, done: int, name: str
) -> int | None:
    """Write the response body into `part`, after its first `done` bytes when the server honoured
    the range, with a progress bar.

    Returns:
        The complete file's expected size, when the server tells it.
    """
    if done and response.status != 206:
        done = 0  # the server ignored the range: start again
    length = response.headers.get("Content-Length")
    total = int(length) + done if length is not None else None
    with (
        open(part, "ab" if done else "wb") as out,
        tqdm(total=total, initial=done, unit="B", unit_scale=True, desc=f"download {name}") as bar,
    ):
        while chunk := response.read(CHUNK):
            out.write(chunk)
            bar.update(len(chunk))
    return total


def _how_to_provide(paths: Paths) -> str:
    return HOW_TO_PROVIDE.format(images=paths.images, kaggle=platforms.KAGGLE_UTKFACE)


def _kaggle_download(handle: str) -> Path:
    """Thin wrapper over `kagglehub.dataset_download` (needs Kaggle credentials off Kaggle)."""
    try:
        import kagglehub
    except ImportError as error:
        raise DataError('Kaggle sources need kagglehub: pip install "agegender[kaggle]"') from error
    try:
        return Path(kagglehub.dataset_download(handle))
    except Exception as error:
        raise DataError(f"kagglehub could not download {handle!r}: {error}") from error


def _count_files(folder: Path) -> int:
    return len(list_files(folder))


def _image_folder(root: Path) -> Path | None:
    """The folder under `root` (or `root` itself) that directly holds the most image files."""
    counts: dict[Path, int] = {}
    for name, _, _ in list_files(root):
        if name.lower().endswith(IMAGE_SUFFIXES):
            folder = (root / name).parent
            counts[folder] = counts.get(folder, 0) + 1
    if not counts:
        return None
    return max(counts, key=lambda folder: (counts[folder], -len(folder.parts)))


def _replace_dir(new: Path, target: Path) -> None:
    """Put `new` at `target` with renames only; an older `target` is removed after the swap."""
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _source_identity(source: str) -> str:
    if source.startswith(("http://", "https://", KAGGLE_PREFIX)):
        return source
    path = Path(source).expanduser().resolve()
    if path.is_file():
        info = path.stat()
        return f"{path}|{info.st_size}|{info.st_mtime_ns}"
    if path.is_dir():  # a file added, removed or rewritten changes it
        return f"{path}|listing-sha256={json_sha256(list_files(path))}"
    return str(path)


def _read_stamp(paths: Paths) -> dict:
    try:
        return json.loads(paths.images_stamp.read_text())
    except (OSError, ValueError):
        return {}
