import hashlib
import io
import random
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agegender import platforms
from agegender.data import sources
from agegender.data.sources import download, extract_archive, prepare_images
from agegender.errors import DataError


def make_tar(path, folder, arcroot="UTKFace"):
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname=arcroot)
    return path


def test_folder_source_is_copied_in_whole(utkface_folder, project):
    folder, _ = utkface_folder
    images = prepare_images(project, str(folder.parent))  # the folder holding UTKFace/ works too
    assert sorted(p.name for p in images.iterdir()) == sorted(p.name for p in folder.iterdir())
    assert (folder / "notes.txt").is_file() and (images / "notes.txt").is_file()


@pytest.mark.parametrize("suffix", [".tar.gz", ".tgz", ".zip"])
def test_archive_sources(utkface_folder, project, tmp_path, suffix):
    folder, _ = utkface_folder
    archive = tmp_path / f"UTKFace{suffix}"
    if suffix == ".zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for path in folder.iterdir():
                zf.write(path, f"UTKFace/{path.name}")
            zf.writestr("README.txt", "outside the image folder")
    else:
        make_tar(archive, folder)
    images = prepare_images(project, str(archive))
    assert images == project.images
    assert len(list(images.iterdir())) == len(list(folder.iterdir()))
    assert not any(p.name.startswith(".staging") for p in project.raw.iterdir())


def test_prepared_images_are_reused_without_a_source(utkface_folder, project, monkeypatch):
    folder, _ = utkface_folder
    prepare_images(project, str(folder))
    monkeypatch.setattr(sources, "extract_archive", None)  # any unpacking would now fail
    assert prepare_images(project) == project.images
    assert prepare_images(project, str(folder)) == project.images  # same source: reused


def test_missing_data_lists_the_ways_to_provide_it(project, monkeypatch, tmp_path):
    monkeypatch.setattr(platforms, "KAGGLE_INPUT", tmp_path / "no-kaggle")
    with pytest.raises(DataError) as raised:
        prepare_images(project)
    message = str(raised.value)
    for hint in ("--source", "UTKFACE_SOURCE", "kaggle:", "http", str(project.images)):
        assert hint in message
    with pytest.raises(DataError, match="does not exist"):
        prepare_images(project, str(tmp_path / "nowhere.tar.gz"))


def test_kaggle_input_is_found_without_a_source(utkface_folder, project, monkeypatch):
    folder, _ = utkface_folder
    monkeypatch.setattr(platforms, "KAGGLE_INPUT", folder.parent)
    assert len(list(prepare_images(project).iterdir())) == len(list(folder.iterdir()))


def test_kaggle_source_without_kagglehub_says_how_to_install(project, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "kagglehub", None)
    with pytest.raises(DataError, match=r"agegender\[kaggle\]"):
        prepare_images(project, "kaggle:jangedoo/utkface-new")


def test_on_colab_without_data_the_public_kaggle_copy_is_fetched(project, monkeypatch, tmp_path):
    monkeypatch.setattr(platforms, "KAGGLE_INPUT", tmp_path / "no-kaggle")
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab_20261101")
    monkeypatch.setitem(__import__("sys").modules, "kagglehub", None)
    with pytest.raises(DataError, match=r"agegender\[kaggle\]"):
        prepare_images(project)


def _tar_with(path, member: tarfile.TarInfo, data: bytes = b"x"):
    with tarfile.open(path, "w:gz") as tar:
        good = tarfile.TarInfo("UTKFace/1_0_0_20170101000000000.jpg.chip.jpg")
        good.size = 1
        tar.addfile(good, io.BytesIO(b"x"))
        member.size = len(data) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


def _symlink(name, target):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


def _hardlink(name, target):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.LNKTYPE, target
    return info


@pytest.mark.parametrize(
    "member",
    [
        tarfile.TarInfo("UTKFace/../../escaped.txt"),
        tarfile.TarInfo("/tmp/absolute-escape.txt"),
        _symlink("UTKFace/link", "/etc/passwd"),
        _hardlink("UTKFace/hard", "/etc/passwd"),
    ],
    ids=["dotdot", "absolute", "symlink", "hardlink"],
)
def test_malicious_tar_is_refused_and_leaves_nothing(project, tmp_path, member):
    archive = _tar_with(tmp_path / "evil.tar.gz", member)
    with pytest.raises(DataError, match="unsafe archive"):
        prepare_images(project, str(archive))
    assert not project.images.exists()
    assert not (tmp_path / "escaped.txt").exists()
    assert list(project.raw.iterdir()) == []


def test_malicious_zip_is_refused(project, tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("UTKFace/1_0_0_20170101000000000.jpg.chip.jpg", b"x")
        zf.writestr("../escaped.txt", b"x")
    with pytest.raises(DataError, match="unsafe archive"):
        prepare_images(project, str(archive))
    assert not project.images.exists()


def test_interrupted_extraction_never_looks_finished(
    utkface_folder, project, tmp_path, monkeypatch
):
    folder, _ = utkface_folder
    archive = make_tar(tmp_path / "UTKFace.tar.gz", folder)
    real_extract = tarfile.TarFile.extract
    calls = []

    def flaky(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 20:
            raise KeyboardInterrupt
        return real_extract(self, *args, **kwargs)

    monkeypatch.setattr(tarfile.TarFile, "extract", flaky)
    with pytest.raises(KeyboardInterrupt):
        prepare_images(project, str(archive))
    assert not project.images.exists()
    assert list(project.raw.iterdir()) == []
    monkeypatch.setattr(tarfile.TarFile, "extract", real_extract)
    assert len(list(prepare_images(project, str(archive)).iterdir())) == len(list(folder.iterdir()))


def test_corrupt_archive_is_a_clear_error(project, tmp_path):
    archive = tmp_path / "UTKFace.tar.gz"
    archive.write_bytes(b"\x1f\x8b\x08 definitely not gzip")
    with pytest.raises(DataError, match="Cannot unpack"):
        prepare_images(project, str(archive))


def test_extract_archive_refuses_an_existing_target(tmp_path, utkface_folder):
    folder, _ = utkface_folder
    archive = make_tar(tmp_path / "a.tar.gz", folder)
    (tmp_path / "out").mkdir()
    with pytest.raises(FileExistsError):
        extract_archive(archive, tmp_path / "out")


class RangeServer:
    """A local HTTP server (127.0.0.1) that serves one payload and honours Range requests."""

    def __init__(self, payload: bytes, cut_after: int | None = None):
        self.payload, self.cut_after, self.ranges = payload, cut_after, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if not self.path.endswith("/UTKFace.tar.gz"):
                    self.send_error(404)
                    return
                start = 0
                if header := self.headers.get("Range"):
                    start = int(header.removeprefix("bytes=").split("-")[0])
                server.ranges.append(start)
                if start >= len(server.payload):
                    self.send_response(416)
                    self.end_headers()
                    return
                body = server.payload[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_after is not None:
                    body, server.cut_after = body[: server.cut_after], None
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/UTKFace.tar.gz"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_url_source_is_downloaded_checked_and_unpacked(utkface_folder, project, tmp_path):
    folder, _ = utkface_folder
    payload = make_tar(tmp_path / "UTKFace.tar.gz", folder).read_bytes()
    digest = hashlib.sha256(payload).hexdigest()
    with RangeServer(payload) as server:
        images = prepare_images(project, f"{server.url}#sha256={digest}")
    assert len(list(images.iterdir())) == len(list(folder.iterdir()))
    assert (project.downloads / "UTKFace.tar.gz").read_bytes() == payload


def test_interrupted_download_resumes_where_it_stopped(tmp_path):
    (tmp_path / "UTKFace").mkdir()
    (tmp_path / "UTKFace" / "noise.bin").write_bytes(random.Random(0).randbytes(1_000_000))
    payload = make_tar(tmp_path / "served.tar.gz", tmp_path / "UTKFace").read_bytes()
    downloads = tmp_path / "downloads"
    with RangeServer(payload, cut_after=300_000) as server:
        with pytest.raises(DataError, match="run again to resume"):
            download(server.url, downloads)
        assert (downloads / "UTKFace.tar.gz.part").stat().st_size == 300_000
        path = download(server.url, downloads, sha256=hashlib.sha256(payload).hexdigest())
    assert server.ranges == [0, 300_000]
    assert path.read_bytes() == payload
    assert not (downloads / "UTKFace.tar.gz.part").exists()


def test_checksum_mismatch_deletes_the_download(tmp_path):
    with RangeServer(b"some bytes") as server, pytest.raises(DataError, match="Checksum mismatch"):
        download(server.url, tmp_path, sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []


def test_http_errors_are_clear(tmp_path):
    with RangeServer(b"payload") as server, pytest.raises(DataError, match="answered HTTP 404"):
        download(server.url.replace("UTKFace", "missing"), tmp_path)
    with pytest.raises(DataError, match="Cannot download"):
        download(server.url, tmp_path)  # the server is gone
