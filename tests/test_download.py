"""``medusa data download`` against a local HTTP server on 127.0.0.1 serving a small archive built from the tiny
fixture dataset: checksum mismatch detected and retried, interrupted transfers resumed with ``Range``, atomic
extraction, the dataset check at the end, and clear instructions when the network is unreachable."""

from __future__ import annotations

import contextlib
import hashlib
import io
import socket
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import run_cli
from medusa_mtl.data.download import ARCHIVES, dataset_paths


class ArchiveServer:
    """Serves ``payload`` at any path; ``modes`` says how to answer each request in turn (then ``ok``).

    Modes: ``ok`` (honours ``Range``), ``corrupt`` (same length, flipped bytes), ``cut`` (announces the whole
    length, sends half, closes the connection), ``error`` (HTTP 503).
    """

    def __init__(self, payload: bytes, modes: list[str] | None = None) -> None:
        self.payload = payload
        self.modes = list(modes or [])
        self.requests: list[str | None] = []  # the Range header of each request
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                server.requests.append(self.headers.get("Range"))
                mode = server.modes.pop(0) if server.modes else "ok"
                if mode == "error":
                    self.send_error(503, "busy")
                    return
                body, start = server.payload, 0
                if mode == "corrupt":
                    body = bytes(b ^ 0x5A for b in body)
                rng = self.headers.get("Range")
                if rng and mode != "corrupt":
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                body = body[start:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", "application/gzip")
                self.end_headers()
                if mode == "cut":
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        class QuietServer(ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a connection the test cut on purpose

        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/NYUD_MT.tgz"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ArchiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def make_archive(dataset_root: Path) -> bytes:
    """A ``.tgz`` holding ``NYUD_MT/...`` like the published one."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(dataset_root, arcname="NYUD_MT")
    return buf.getvalue()


@pytest.fixture
def payload(nyud_root: Path) -> bytes:
    return make_archive(nyud_root)


def download(dest: Path, url: str, *extra: str) -> tuple[int, str, str]:
    return run_cli(["data", "download", "nyud", "--root", str(dest), "--url", url, "--retry-wait", "0",
                    "--timeout", "20", *extra])  # fmt: skip


def assert_clean(dest: Path) -> None:
    """Only the archive, its checksum record and the dataset folder: no partial or temporary leftovers."""
    leftovers = [p.name for p in dest.iterdir() if p.name.startswith(".") or p.name.endswith(".part")]
    assert not leftovers, leftovers


@contextlib.contextmanager
def closed_port_url() -> Iterator[str]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there any more: connection refused
    yield f"http://127.0.0.1:{port}/NYUD_MT.tgz"


def test_table_has_urls_and_no_invented_checksums() -> None:
    assert set(ARCHIVES) == {"nyud", "pascal"}
    for a in ARCHIVES.values():
        assert a.url.startswith("https://") and a.url.endswith(a.filename)
        assert a.sha256 is None or len(a.sha256) == 64
    archive, path, folder = dataset_paths("nyud", "data")
    assert (path, folder) == (Path("data/NYUD_MT.tgz"), Path("data/NYUD_MT"))
    assert dataset_paths("nyud", "data/NYUD_MT")[1:] == (path, folder)  # --root may name the folder itself


def test_corrupt_download_is_detected_and_retried(payload: bytes, nyud_root: Path, tmp_path: Path) -> None:
    digest = hashlib.sha256(payload).hexdigest()
    dest = tmp_path / "data"
    with ArchiveServer(payload, ["corrupt"]) as server:
        rc, out, err = download(dest, server.url, "--sha256", digest)
    assert rc == 0, out + err
    assert len(server.requests) == 2
    assert "checksum mismatch" in out and f"sha256 {digest}: verified" in out
    assert "no problems found" in out  # the same check as `medusa data check`
    assert (dest / "NYUD_MT.tgz").read_bytes() == payload
    got = sorted(p.relative_to(dest / "NYUD_MT") for p in (dest / "NYUD_MT").rglob("*"))
    assert got == sorted(p.relative_to(nyud_root) for p in nyud_root.rglob("*"))
    assert_clean(dest)


def test_interrupted_download_resumes_with_range(payload: bytes, tmp_path: Path) -> None:
    dest = tmp_path / "data"
    with ArchiveServer(payload, ["cut", "error"]) as server:  # dropped mid-way, then a server hiccup
        rc, out, err = download(dest, server.url)
    assert rc == 0 and "Traceback" not in err, out + err
    assert "interrupted" in out and "resuming at" in out
    half = len(payload) // 2
    assert server.requests == [None, f"bytes={half}-", f"bytes={half}-"]
    assert (dest / "NYUD_MT.tgz").read_bytes() == payload
    # no published checksum: computed, recorded, and said to be unverified
    digest = hashlib.sha256(payload).hexdigest()
    assert (dest / "NYUD_MT.tgz.sha256").read_text() == f"{digest}  NYUD_MT.tgz\n"
    assert "NOT VERIFIED" in out and digest in out
    assert_clean(dest)


def test_partial_file_of_a_killed_run_is_resumed(payload: bytes, tmp_path: Path) -> None:
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "NYUD_MT.tgz.part").write_bytes(payload[:1000])
    with ArchiveServer(payload) as server:
        rc, out, err = download(dest, server.url, "--sha256", hashlib.sha256(payload).hexdigest())
    assert rc == 0, out + err
    assert server.requests == ["bytes=1000-"]
    assert (dest / "NYUD_MT" / "gt_sets" / "train.txt").is_file()


def test_persistent_checksum_mismatch_fails_clearly(payload: bytes, tmp_path: Path) -> None:
    dest = tmp_path / "data"
    with ArchiveServer(payload, ["corrupt"] * 3) as server:
        rc, out, err = download(dest, server.url, "--sha256", hashlib.sha256(payload).hexdigest(), "--retries", "2")
    assert rc == 2 and "Traceback" not in err
    assert "medusa data download: error:" in err and "expected" in err and "after 3 attempts" in err
    assert len(server.requests) == 3
    assert sorted(p.name for p in dest.iterdir()) == []  # nothing that looks like a dataset or an archive


def test_unreachable_network_says_how_to_install_by_hand(payload: bytes, tmp_path: Path) -> None:
    dest = tmp_path / "data"
    with closed_port_url() as url:
        rc, out, err = download(dest, url, "--retries", "1")
        assert rc == 2 and "Traceback" not in err
        assert "network seems unreachable" in err
        assert "by hand" in err and str(dest / "NYUD_MT.tgz") in err and "medusa data check" in err
        assert not (dest / "NYUD_MT").exists()
        # following the instructions: the archive copied there by hand is verified and extracted offline
        (dest / "NYUD_MT.tgz").write_bytes(payload)
        rc, out, err = download(dest, url)
    assert rc == 0, out + err
    assert "using the archive already there" in out and "no problems found" in out
    assert (dest / "NYUD_MT.tgz.sha256").is_file()
    assert_clean(dest)


def test_offline_fails_at_once_without_retrying(payload: bytes, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed name lookup (no network) is not retried: the instructions come at once, not after the retries'
    waits (2 + 4 + 8 s by default). A refused connection (a server restarting) is still retried."""
    import urllib.error

    from medusa_mtl.data import download as dl

    calls: list[str] = []
    sleeps: list[float] = []
    monkeypatch.setattr(dl.time, "sleep", sleeps.append)

    def offline(url: str, *args: object) -> None:
        calls.append(url)
        raise urllib.error.URLError(socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"))

    monkeypatch.setattr(dl, "_download_once", offline)
    rc, _, err = download(tmp_path / "data", "https://example.invalid/NYUD_MT.tgz")
    assert rc == 2 and "network seems unreachable" in err and "by hand" in err
    assert len(calls) == 1 and sleeps == []
    with closed_port_url() as url:  # refused: retried as asked
        monkeypatch.undo()
        monkeypatch.setattr(dl.time, "sleep", sleeps.append)
        rc, _, err = download(tmp_path / "data2", url, "--retries", "2")
    assert rc == 2 and len(sleeps) == 2


def test_corrupt_archive_is_not_half_extracted(payload: bytes, tmp_path: Path) -> None:
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "NYUD_MT.tgz").write_bytes(payload[: len(payload) * 2 // 3])  # placed by hand, incomplete
    with closed_port_url() as url:
        rc, out, err = download(dest, url)
    assert rc == 2 and "cannot extract" in err and "Traceback" not in err
    assert not (dest / "NYUD_MT").exists()
    assert_clean(dest)
    # an archive whose members escape the destination is refused
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    (dest / "NYUD_MT.tgz").write_bytes(evil.getvalue())
    with closed_port_url() as url:
        rc, out, err = download(dest, url)
    assert rc == 2 and "cannot extract" in err
    assert not (tmp_path / "escaped.txt").exists() and not (dest / "escaped.txt").exists()
    assert not (dest / "NYUD_MT").exists()


def test_downloaded_dataset_with_problems_fails_the_check(nyud_root: Path, tmp_path: Path) -> None:
    depth = np.load(nyud_root / "depth/n1.npy")
    depth[2, 2] = np.inf
    np.save(nyud_root / "depth/n1.npy", depth)
    dest = tmp_path / "data"
    with ArchiveServer(make_archive(nyud_root)) as server:
        rc, out, err = download(dest, server.url)
    assert rc == 1, out + err
    assert "1 problem(s)" in out and "depth/n1.npy" in out and "NaN/inf" in out
    # already there: not downloaded again, only checked (`--no-check` skips even that)
    with ArchiveServer(b"unused") as server:
        rc, out, _ = download(dest, server.url, "--no-check")
    assert rc == 0 and server.requests == [] and "already exists" in out
