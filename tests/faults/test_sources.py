"""Damaged, edited, stale or odd sources are refused with what to do, or checked and used."""

import gzip
import hashlib
import io
import os
import random
import re
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from support import write_jpeg

from agegender.data.sources import download, prepare_images
from agegender.errors import DataError

NAMES = [f"{20 + i}_{i % 2}_0_2017010100000000{i}.jpg.chip.jpg" for i in range(6)]


def _noise(seed: int, size: int = 30_000) -> bytes:
    """Incompressible bytes: a flipped byte of the compressed archive lands in a member's data."""
    return random.Random(seed).randbytes(size)


def _tar_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _write_tar(path, members: dict[str, bytes]):
    data = _tar_bytes(members)
    path.write_bytes(data if path.name.endswith(".tar") else gzip.compress(data))
    return path


def _write_zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _images(seed_offset: int = 0) -> dict[str, bytes]:
    return {f"UTKFace/{name}": _noise(i + seed_offset) for i, name in enumerate(NAMES)}


def _flip(data: bytes, at: int, count: int = 8) -> bytes:
    return data[:at] + bytes(b ^ 0xFF for b in data[at : at + count]) + data[at + count :]


def _gz_damaged_in_its_data(tmp_path):
    archive = _write_tar(tmp_path / "UTKFace.tar.gz", _images())
    data = archive.read_bytes()
    archive.write_bytes(_flip(data, len(data) * 3 // 4))
    return archive


def _tgz_with_a_damaged_header(tmp_path):
    """A header corrupted before compression: the gzip CRC is right, tarfile stops there."""
    data = _tar_bytes(_images())
    header = data.index(NAMES[3].encode()) - len("UTKFace/")
    archive = tmp_path / "UTKFace.tgz"
    archive.write_bytes(gzip.compress(_flip(data, header + 148)))  # 148: the header checksum
    return archive


def _tar_with_a_damaged_header(tmp_path):
    data = _tar_bytes(_images())
    header = data.index(NAMES[3].encode()) - len("UTKFace/")
    archive = tmp_path / "UTKFace.tar"
    archive.write_bytes(_flip(data, header + 148))
    return archive


def _zip_damaged_in_its_data(tmp_path):
    members = {f"UTKFace/{name}": name.encode() * 2000 for name in NAMES}  # compressible
    archive = _write_zip(tmp_path / "UTKFace.zip", members)
    data = archive.read_bytes()
    archive.write_bytes(_flip(data, len(data) // 2))
    return archive


def _zip_cut_short(tmp_path):
    archive = _write_zip(tmp_path / "UTKFace.zip", _images())
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size * 3 // 4])
    return archive


@pytest.mark.parametrize(
    "make",
    [
        _gz_damaged_in_its_data,
        _tgz_with_a_damaged_header,
        _tar_with_a_damaged_header,
        _zip_damaged_in_its_data,
        _zip_cut_short,
    ],
    ids=["tar.gz-data", "tgz-header", "tar-header", "zip-data", "zip-cut"],
)
def test_a_damaged_archive_is_refused_and_leaves_nothing(project, tmp_path, make):
    archive = make(tmp_path)
    with pytest.raises(DataError, match="damaged") as raised:
        prepare_images(project, str(archive))
    assert "Download it again" in str(raised.value)
    assert not project.images.exists()
    assert list(project.raw.iterdir()) == []


def test_an_intact_archive_of_each_kind_is_used_in_whole(project, tmp_path):
    for archive in (
        _write_tar(tmp_path / "a.tar.gz", _images()),
        _write_tar(tmp_path / "b.tar", _images(1)),
        _write_zip(tmp_path / "c.zip", _images(2)),
    ):
        images = prepare_images(project, str(archive))
        assert sorted(p.name for p in images.iterdir()) == sorted(NAMES)


def test_the_sha256_of_a_local_archive_is_checked(project, tmp_path):
    archive = _write_tar(tmp_path / "UTKFace.tar.gz", _images())
    with pytest.raises(DataError, match="Checksum mismatch"):
        prepare_images(project, str(archive), sha256="0" * 64)
    assert not project.images.exists()
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert len(list(prepare_images(project, str(archive), sha256=digest.upper()).iterdir())) == 6


def test_a_sha256_is_checked_even_when_the_archive_was_prepared_before(project, tmp_path):
    archive = _write_tar(tmp_path / "UTKFace.tar.gz", _images())
    prepare_images(project, str(archive))
    with pytest.raises(DataError, match="Checksum mismatch"):
        prepare_images(project, str(archive), sha256="0" * 64)


def test_a_sha256_for_a_folder_or_a_malformed_one_is_refused(project, utkface_folder, tmp_path):
    folder, _ = utkface_folder
    with pytest.raises(DataError, match="is a folder"):
        prepare_images(project, str(folder), sha256="0" * 64)
    archive = _write_tar(tmp_path / "UTKFace.tar.gz", _images())
    with pytest.raises(DataError, match="not a sha256"):
        prepare_images(project, str(archive), sha256="abc")
    assert not project.images.exists()


def test_duplicate_member_names_are_refused(project, tmp_path):
    twice = {f"UTKFace/{NAMES[0]}": b"first", f"./UTKFace/{NAMES[0]}": b"second"}
    archive = tmp_path / "twice.tar"
    archive.write_bytes(_tar_bytes(twice))
    with pytest.raises(DataError, match=re.escape(f"UTKFace/{NAMES[0]}' twice")):
        prepare_images(project, str(archive))
    zipped = tmp_path / "twice.zip"
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr(f"UTKFace/{NAMES[1]}", b"first")
        zf.writestr(f"UTKFace/{NAMES[1]}", b"second")
    with pytest.raises(DataError, match=re.escape(f"UTKFace/{NAMES[1]}' twice")):
        prepare_images(project, str(zipped))
    assert not project.images.exists()
    assert list(project.raw.iterdir()) == []


class Server:
    """A local HTTP server (127.0.0.1, HTTP/1.0: a body without Content-Length ends when the
    connection closes) whose answer to each GET is written by `respond(handler, start)`, where
    `start` is the first byte the request's Range asks for (0 without one)."""

    def __init__(self, respond):
        self.starts = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                start = self.headers.get("Range", "bytes=0-").removeprefix("bytes=")
                server.starts.append(int(start.split("-")[0]))
                respond(self, server.starts[-1])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/UTKFace.tar.gz"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _answer(handler, status: int, body: bytes, *, length: bool = True):
    handler.send_response(status)
    if length:
        handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _ranges(payload: bytes):
    """Answers as a server honouring Range requests does: 206 with the rest, 416 past the end."""

    def respond(handler, start):
        if start >= len(payload):
            _answer(handler, 416, b"")
        else:
            _answer(handler, 206 if start else 200, payload[start:])

    return respond


@pytest.fixture
def payload(tmp_path):
    return _write_tar(tmp_path / "served.tar.gz", _images()).read_bytes()


def test_a_download_cut_short_without_content_length_is_not_kept(tmp_path, payload):
    def cut(handler, start):
        _answer(handler, 200, payload[: len(payload) // 2], length=False)

    downloads = tmp_path / "downloads"
    with Server(cut) as server, pytest.raises(DataError, match="not a readable") as raised:
        download(server.url, downloads)
    assert "deleted" in str(raised.value)
    assert list(downloads.iterdir()) == []


def test_a_web_page_served_with_status_200_is_not_kept(tmp_path):
    page = b"<!DOCTYPE html><html><body>Please sign in</body></html>"
    downloads = tmp_path / "downloads"
    with (
        Server(lambda handler, start: _answer(handler, 200, page)) as server,
        pytest.raises(DataError, match="web page"),
    ):
        download(server.url, downloads)
    assert list(downloads.iterdir()) == []


def test_a_part_file_with_a_wrong_prefix_is_downloaded_again(tmp_path, payload):
    (tmp_path / "UTKFace.tar.gz.part").write_bytes(b"garbage" * 100)
    with Server(_ranges(payload)) as server:
        path = download(server.url, tmp_path)
    assert server.starts == [700, 0]
    assert path.read_bytes() == payload
    assert not (tmp_path / "UTKFace.tar.gz.part").exists()


def test_a_416_answer_is_not_taken_as_complete(tmp_path, payload):
    (tmp_path / "UTKFace.tar.gz.part").write_bytes(b"\0" * (len(payload) + 10))
    with Server(_ranges(payload)) as server:
        path = download(server.url, tmp_path)
    assert server.starts == [len(payload) + 10, 0]
    assert path.read_bytes() == payload


def test_a_complete_part_answered_416_is_kept(tmp_path, payload):
    (tmp_path / "UTKFace.tar.gz.part").write_bytes(payload)
    with Server(_ranges(payload)) as server:
        path = download(server.url, tmp_path)
    assert server.starts == [len(payload)]
    assert path.read_bytes() == payload


def test_a_kept_download_found_unreadable_is_deleted_and_fetched_again(project, payload):
    kept = project.downloads / "UTKFace.tar.gz"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(payload[: len(payload) // 2])  # kept by an earlier version
    with Server(_ranges(payload)) as server:
        with pytest.raises(DataError, match="damaged") as raised:
            prepare_images(project, server.url)
        assert "run again" in str(raised.value)
        assert not kept.exists()
        assert sorted(p.name for p in prepare_images(project, server.url).iterdir()) == NAMES
    assert kept.read_bytes() == payload


def test_a_folder_source_that_changed_is_copied_again(project, tmp_path):
    folder = tmp_path / "source" / "UTKFace"
    for i, name in enumerate(NAMES[:4]):
        write_jpeg(folder / name, i)
    assert len(list(prepare_images(project, str(folder)).iterdir())) == 4
    write_jpeg(folder / NAMES[4], 4)
    assert (prepare_images(project, str(folder)) / NAMES[4]).is_file()  # a file added
    (folder / NAMES[0]).unlink()
    assert not (prepare_images(project, str(folder)) / NAMES[0]).exists()  # a file removed


def test_links_in_a_folder_source_are_never_followed(project, tmp_path, capsys):
    folder = tmp_path / "source" / "UTKFace"
    for i, name in enumerate(NAMES[:4]):
        write_jpeg(folder / name, i)
    secret = tmp_path / "secret.txt"
    secret.write_text("not for raw/")
    elsewhere = tmp_path / "elsewhere"
    write_jpeg(elsewhere / NAMES[5], 5)
    os.symlink(secret, folder / NAMES[4])
    os.symlink(elsewhere, folder / "more")
    images = prepare_images(project, str(folder))
    assert sorted(p.name for p in images.iterdir()) == NAMES[:4]
    assert "link" in capsys.readouterr().out


def test_stale_staging_folders_are_removed_on_the_next_run(project, utkface_folder):
    folder, _ = utkface_folder
    stale = project.raw / ".staging-killed"
    (stale / "unpacked").mkdir(parents=True)
    (stale / "unpacked" / "big.bin").write_bytes(b"x" * 1000)
    prepare_images(project, str(folder))
    assert [p.name for p in project.raw.iterdir() if p.name.startswith(".")] == []
