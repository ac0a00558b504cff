"""Get UTKFace's images into `data/raw/UTKFace`: from a folder, an archive, a URL or Kaggle.

The images folder appears only when it is complete: everything is unpacked or copied into a
staging folder beside it and renamed into place at the end, so an interrupted run leaves no
half-filled `UTKFace/` behind. Archives are checked member by member before anything is written:
absolute paths, `..` components, links and device files are refused.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import Request, urlopen

from tqdm import tqdm

from agegender import platforms
from agegender.config import Paths
from agegender.data.labels import IMAGE_SUFFIXES
from agegender.errors import DataError
from agegender.files import CHUNK, file_sha256, list_files, write_json_atomic

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
KAGGLE_PREFIX = "kaggle:"
# Python's own extraction checks, where this Python has them (3.11.4+), on top of ours.
_TAR_FILTER = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}

HOW_TO_PROVIDE = """\
UTKFace was not found. Provide it in one of these ways:
  - agegender data prepare --source PATH_OR_URL  (or set UTKFACE_SOURCE), where the source is
      a folder of UTKFace JPEGs, a .tar.gz/.tgz/.zip archive of them (as UTKFace is distributed),
      an http(s) URL of such an archive (append #sha256=HEX to check it), or
      kaggle:OWNER/DATASET (needs `pip install "agegender[kaggle]"` and Kaggle credentials);
  - place the images in {images};
  - on Kaggle, attach a UTKFace dataset to the notebook (on Colab and Kaggle, without one, the
      public copy {kaggle} is fetched with kagglehub)."""


def prepare_images(paths: Paths, source: str | None = None, *, sha256: str | None = None) -> Path:
    """Make `paths.images` hold the UTKFace images, fetching or unpacking them when needed.

    Args:
        paths: the project's folders.
        source: a folder, an archive, an http(s) URL or ``kaggle:OWNER/DATASET``; default
            `$UTKFACE_SOURCE`, then an already prepared `paths.images`, then
            `platforms.default_source` (Kaggle's inputs; the public Kaggle copy on Colab/Kaggle).
        sha256: the expected checksum of a downloaded archive (also `#sha256=` in the URL).

    Returns:
        `paths.images`.
    """
    source = source or os.environ.get("UTKFACE_SOURCE") or None
    if source is None:
        if paths.images.is_dir():
            return paths.images
        source = _default_source(paths)

    identity = _source_identity(source)
    if paths.images.is_dir() and _read_stamp(paths).get("identity") == identity:
        return paths.images

    local = _fetch_source(source, paths, sha256)
    folder, left_out = _install_images(local, source, paths)
    stamp = {
        "source": source,
        "identity": identity,
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


def _default_source(paths: Paths) -> str:
    source = platforms.default_source()
    if source is None:
        raise DataError(_how_to_provide(paths))
    return source


def _fetch_source(source: str, paths: Paths, sha256: str | None) -> Path:
    """The source as a local folder or archive, downloaded first when it is a URL or on Kaggle."""
    if source.startswith(("http://", "https://")):
        url, _, fragment = source.partition("#")
        sha256 = sha256 or os.environ.get("UTKFACE_SHA256") or fragment.removeprefix("sha256=")
        return download(url, paths.downloads, sha256=sha256 or None)
    if source.startswith(KAGGLE_PREFIX):
        return _kaggle_download(source.removeprefix(KAGGLE_PREFIX))
    local = Path(source).expanduser()
    if not local.exists():
        raise DataError(f"The data source does not exist: {local}\n\n" + _how_to_provide(paths))
    return local


def _install_images(local: Path, source: str, paths: Paths) -> tuple[str, int]:
    """Put the image folder found in `local` at `paths.images`, through a staging folder.

    Returns:
        The image folder's path inside `local`, and the number of files left outside it.
    """
    paths.raw.mkdir(parents=True, exist_ok=True)
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
            shutil.copytree(found, complete, symlinks=False)
        _replace_dir(complete, paths.images)
    return str(found.relative_to(unpacked)), left_out


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
        DataError: for a corrupt archive or a member that would escape `dest` (absolute path,
            ``..``, a link or a device); nothing is left in `dest` then.
    """
    dest.mkdir(parents=True)
    try:
        if archive.name.lower().endswith(".zip"):
            _extract_zip(archive, dest)
        else:
            _extract_tar(archive, dest)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as error:
        shutil.rmtree(dest, ignore_errors=True)
        raise DataError(f"Cannot unpack {archive}: {error}") from error
    except DataError:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def _check_member_name(name: str) -> None:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or (path.parts and ":" in path.parts[0]) or ".." in path.parts:
        raise DataError(
            f"Refusing an unsafe archive: member {name!r} would be written outside "
            "the target folder."
        )


def _extract_tar(archive: Path, dest: Path) -> None:
    with tarfile.open(archive, mode="r:*") as tar:
        for member in tqdm(tar, desc=f"unpack {archive.name}", unit=" files", mininterval=1):
            _check_member_name(member.name)
            if not (member.isfile() or member.isdir()):
                raise DataError(
                    f"Refusing an unsafe archive: member {member.name!r} is a link or special file."
                )
            tar.extract(member, dest, **_TAR_FILTER)


def _extract_zip(archive: Path, dest: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        for info in members:
            _check_member_name(info.filename)
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise DataError(f"Refusing an unsafe archive: member {info.filename!r} is a link.")
        for info in tqdm(members, desc=f"unpack {archive.name}", unit=" files", mininterval=1):
            zf.extract(info, dest)


def download(url: str, folder: Path, *, sha256: str | None = None) -> Path:
    """Stream `url` into `folder`, resuming a partial download, and check its sha256 when given.

    Returns:
        The downloaded file; the partial `.part` file becomes it only once complete and checked.
    """
    name = PurePosixPath(urlsplit(url).path).name or "UTKFace.tar.gz"
    final = folder / name
    if final.is_file() and (sha256 is None or file_sha256(final) == sha256.lower()):
        return final
    folder.mkdir(parents=True, exist_ok=True)
    part = final.with_name(final.name + ".part")
    _download_part(url, part, name)
    _check_download(url, part, sha256)
    os.replace(part, final)
    return final


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
        if error.code != 416 or not done:  # 416 on a resume: nothing left, the part is complete
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


def _check_download(url: str, part: Path, sha256: str | None) -> None:
    """Delete `part` and refuse it when its sha256 is not the expected one."""
    if sha256 and (actual := file_sha256(part)) != sha256.lower():
        part.unlink()
        raise DataError(
            f"Checksum mismatch for {url}: expected sha256 {sha256}, got {actual}. "
            "The download was deleted."
        )


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
        stat = path.stat()
        return f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    return str(path)


def _read_stamp(paths: Paths) -> dict:
    try:
        return json.loads(paths.images_stamp.read_text())
    except (OSError, ValueError):
        return {}
