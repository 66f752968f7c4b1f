"""``medusa data download nyud|pascal --root DIR``: fetch the published NYUD_MT / PASCAL_MT archives.

The archives are the multi-task releases of the ASTMT / MTI-Net authors (SPEC §6 layout). The download

* is **resumable**: bytes go to ``<archive>.part``; an interrupted transfer (dropped connection, killed
  process) continues from there with an HTTP ``Range`` request, and is retried a few times;
* is **sha256-checked**: against :data:`ARCHIVES`' value when one is recorded, or ``--sha256``. No checksum is
  published for these archives, so by default the sha256 of what was downloaded is computed, printed and written
  to ``<archive>.sha256`` (later runs compare with it), and the output says it was not verified against a
  published value. A mismatch deletes the file and downloads again;
* is **extracted atomically**: into a temporary folder next to the destination, then renamed into place, so an
  interrupted extraction never leaves a half-filled ``NYUD_MT`` / ``PASCAL_MT`` folder;
* ends with the same validation as ``medusa data check``.

Without network access it says so and how to install the files by hand: copy the archive to
``DIR/NYUD_MT.tgz`` (then the same command verifies and extracts it without the network), or extract it yourself
and run ``medusa data check``.

URLs and checksums live in :data:`ARCHIVES`, nowhere else.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import re
import shutil
import socket
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import make_temp_dir
from ..errors import DownloadError
from ..options import nonnegative_float, nonnegative_int, output_dir, positive_float, positive_int


@dataclass(frozen=True)
class Archive:
    """A published dataset archive.

    Attributes:
        dataset: ``nyud`` or ``pascal`` (the ``--dataset`` of ``medusa data check``).
        filename: the archive's file name.
        folder: the dataset folder it contains (what ``--data.root`` points to).
        url: where it is published.
        sha256: its published sha256, ``None`` when none is known (then it is computed and recorded, not
            verified).
        other_sources: where else it can be obtained by hand (shown when the download fails).
        markers: entries of the dataset folder used to recognise it inside the archive.
    """

    dataset: str
    filename: str
    folder: str
    url: str
    sha256: str | None
    other_sources: tuple[str, ...]
    markers: tuple[str, ...]


ARCHIVES: dict[str, Archive] = {
    "nyud": Archive(
        dataset="nyud",
        filename="NYUD_MT.tgz",
        folder="NYUD_MT",
        url="https://data.vision.ee.ethz.ch/kmaninis/share/MTL/NYUD_MT.tgz",
        sha256=None,  # no published checksum
        other_sources=(
            "Google Drive file 14EAEMXmd3zs2hIMY63UhHPSFPDAkiTzw (the MTI-Net repository's mirror of NYUD_MT.tgz)",
        ),
        markers=("images", "gt_sets"),
    ),
    "pascal": Archive(
        dataset="pascal",
        filename="PASCAL_MT.tgz",
        folder="PASCAL_MT",
        url="https://data.vision.ee.ethz.ch/kmaninis/share/MTL/PASCAL_MT.tgz",
        sha256=None,  # no published checksum
        other_sources=(),
        markers=("JPEGImages", "ImageSets"),
    ),
}
"""The published archives: the one place that knows URLs and checksums."""

CHUNK = 1 << 20


class ChecksumMismatch(DownloadError):
    """The downloaded bytes do not have the expected sha256."""


class _Incomplete(Exception):
    """The transfer stopped early; the partial file is kept to resume from."""


# ----------------------------------------------------------------------------------------------------------
# hashing
# ----------------------------------------------------------------------------------------------------------


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _normalise_sha256(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    v = value.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", v):
        raise DownloadError(f"{what}: expected 64 hexadecimal digits (a sha256), got {value!r}")
    return v


def read_recorded_sha256(archive: Path) -> str | None:
    """The sha256 recorded in ``<archive>.sha256`` (``sha256sum`` format), if that file exists."""
    rec = archive.with_name(archive.name + ".sha256")
    if not rec.is_file():
        return None
    words = rec.read_text(encoding="utf-8", errors="replace").split()
    return _normalise_sha256(words[0], str(rec)) if words else None


def write_recorded_sha256(archive: Path, digest: str) -> Path:
    """Write ``<archive>.sha256`` as ``sha256sum`` would (``<hex>  <name>``); returns its path."""
    rec = archive.with_name(archive.name + ".sha256")
    rec.write_text(f"{digest}  {archive.name}\n", encoding="utf-8")
    return rec


# ----------------------------------------------------------------------------------------------------------
# resumable download
# ----------------------------------------------------------------------------------------------------------


def _content_range_total(header: str | None) -> tuple[int | None, int | None]:
    """``(start, total)`` of a ``Content-Range: bytes start-end/total`` header (``None`` where unknown)."""
    m = re.match(r"bytes\s+(\d+)-\d+/(\d+|\*)", header or "")
    if not m:
        return None, None
    return int(m.group(1)), (None if m.group(2) == "*" else int(m.group(2)))


def _download_once(url: str, part: Path, timeout: float, log: Callable[[str], None]) -> None:
    """One attempt: append the missing bytes to ``part`` (resuming with ``Range`` when it is not empty).

    Raises :class:`_Incomplete` when the connection ends early (the bytes received are kept),
    ``urllib.error.HTTPError`` / ``URLError`` / ``OSError`` for other failures.
    """
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "medusa-mtl-downloader", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # the range starts at or past the end: the partial file is complete
            _, total = _content_range_total(err.headers.get("Content-Range"))
            if total is None or total == offset:
                return
            part.unlink()  # the server's file changed size: start again
            raise _Incomplete(f"partial file larger than the server's {total} bytes; starting again") from None
        raise
    with response:
        status = getattr(response, "status", 200)
        if offset and status == 206:
            start, total = _content_range_total(response.headers.get("Content-Range"))
            if start != offset:
                raise _Incomplete(f"server answered range start {start}, asked {offset}; starting again")
            mode, received = "ab", offset
            log(f"  resuming at {offset / 1e6:.1f} MB")
        else:
            if offset:
                log("  the server ignored the range request: starting again from the beginning")
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            mode, received = "wb", 0
        last_report = time.monotonic()
        with open(part, mode) as f:
            try:
                while True:
                    block = response.read(CHUNK)
                    if not block:
                        break
                    f.write(block)
                    received += len(block)
                    if time.monotonic() - last_report > 10:
                        last_report = time.monotonic()
                        of = f" of {total / 1e6:.1f}" if total else ""
                        log(f"  {received / 1e6:.1f}{of} MB")
            except (http.client.IncompleteRead, ConnectionError, TimeoutError) as err:
                f.flush()
                raise _Incomplete(f"connection lost after {received} bytes ({type(err).__name__})") from None
            finally:
                f.flush()
                os.fsync(f.fileno())
        if total is not None and received < total:
            raise _Incomplete(f"connection closed after {received} of {total} bytes")
        if total is not None and received > total:
            part.unlink()
            raise _Incomplete(f"received {received} bytes, more than the announced {total}; starting again")


def _is_network_unreachable(err: BaseException) -> bool:
    if isinstance(err, urllib.error.HTTPError):
        return False
    reason = getattr(err, "reason", err)
    return isinstance(reason, OSError)  # DNS failure, refused or reset connection, timeout


def _is_offline(err: BaseException) -> bool:
    """No name resolution or no route to the host: this machine is offline (a refused or reset connection or a
    timeout may be a server restarting, and is retried)."""
    reason = getattr(err, "reason", err)
    return isinstance(reason, socket.gaierror) or getattr(reason, "errno", None) in (errno.ENETUNREACH,
                                                                                     errno.EHOSTUNREACH)


def fetch(
    url: str,
    dest: str | os.PathLike[str],
    expected_sha256: str | None = None,
    retries: int = 3,
    retry_wait: float = 2.0,
    timeout: float = 60.0,
    log: Callable[[str], None] = print,
) -> str:
    """Download ``url`` to ``dest`` (resumable, retried), verify its sha256; returns the sha256.

    Bytes go to ``dest + ".part"``, renamed to ``dest`` only once complete and verified. An interrupted transfer
    resumes from the partial file (HTTP ``Range``); a checksum mismatch deletes it and downloads again. Up to
    ``retries`` further attempts are made, ``retry_wait`` seconds apart (doubling), except when the machine is
    offline (no name resolution, no route): that fails at once.

    Raises:
        ChecksumMismatch: every attempt gave bytes with another sha256 than ``expected_sha256``.
        DownloadError: the download failed (the message says why; the partial file is kept for a later run).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    expected = _normalise_sha256(expected_sha256, "expected sha256")
    wait = retry_wait
    last_error: BaseException | None = None
    for attempt in range(retries + 1):
        if attempt:
            log(f"  retrying in {wait:.0f} s (attempt {attempt + 1} of {retries + 1})")
            time.sleep(wait)
            wait *= 2
        try:
            _download_once(url, part, timeout, log)
        except _Incomplete as err:
            log(f"  interrupted: {err}")
            last_error = err
            continue
        except urllib.error.HTTPError as err:
            last_error = err
            if err.code < 500 and err.code not in (408, 429):
                raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from None
            log(f"  server error HTTP {err.code} {err.reason}")
            continue
        except (urllib.error.URLError, OSError) as err:
            last_error = err
            log(f"  network error: {getattr(err, 'reason', err)}")
            if _is_offline(err):  # waiting does not bring the network back: say how to place the file now
                break
            continue
        digest = sha256_file(part)
        if expected is not None and digest != expected:
            size = part.stat().st_size
            part.unlink()
            last_error = ChecksumMismatch(
                f"{url}: the downloaded file ({size} bytes) has sha256 {digest}, expected {expected}"
            )
            log(f"  checksum mismatch (sha256 {digest}, expected {expected}): the file is corrupt; deleted")
            continue
        os.replace(part, dest)
        return digest
    if isinstance(last_error, ChecksumMismatch):
        raise ChecksumMismatch(f"{last_error} (after {retries + 1} attempts)")
    if last_error is not None and _is_network_unreachable(last_error):
        raise DownloadError(
            f"cannot reach {url}: {getattr(last_error, 'reason', last_error)} — the network seems unreachable"
        ) from None
    raise DownloadError(f"{url}: download failed after {retries + 1} attempts: {last_error}") from None


# ----------------------------------------------------------------------------------------------------------
# atomic extraction
# ----------------------------------------------------------------------------------------------------------


def _looks_like(folder: Path, markers: tuple[str, ...]) -> bool:
    return all((folder / m).exists() for m in markers)


def _find_dataset_folder(top: Path, archive: Archive) -> Path | None:
    """The dataset folder inside an extracted archive: ``top/<folder>``, ``top`` itself, or the single
    sub-folder that has the dataset's layout."""
    if _looks_like(top / archive.folder, archive.markers):
        return top / archive.folder
    if _looks_like(top, archive.markers):
        return top
    candidates = [d for d in top.iterdir() if d.is_dir() and _looks_like(d, archive.markers)]
    return candidates[0] if len(candidates) == 1 else None


def extract_atomic(
    archive_path: str | os.PathLike[str], dest: str | os.PathLike[str], archive: Archive, force: bool = False
) -> Path:
    """Extract a dataset archive to ``dest`` (the dataset folder) atomically.

    Files are extracted into a temporary folder next to ``dest`` (same file system) with tarfile's ``data``
    filter (no absolute paths, no ``..``, no links out of the folder, no devices), the dataset folder is found
    inside, and only then renamed to ``dest``. An existing ``dest`` is replaced only with ``force``.
    """
    archive_path, dest = Path(archive_path), Path(dest)
    if dest.exists() and not force:
        raise DownloadError(f"{dest} already exists; use --force to replace it with the archive's content")
    tmp = make_temp_dir(dest.parent, f".{dest.name}.extract-")
    try:
        try:
            with tarfile.open(archive_path, "r:*") as tar:
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, EOFError, OSError, ValueError) as err:
            raise DownloadError(
                f"{archive_path}: cannot extract ({type(err).__name__}: {err}); the archive is corrupt or "
                "incomplete — delete it and download again"
            ) from None
        found = _find_dataset_folder(tmp, archive)
        if found is None:
            entries = sorted(p.name for p in tmp.iterdir())[:10]
            raise DownloadError(
                f"{archive_path}: no {archive.folder} folder inside (expected {', '.join(archive.markers)}); "
                f"top-level entries: {entries}"
            )
        if dest.exists():  # force: move the old folder aside first, delete it once the new one is in place
            old = make_temp_dir(dest.parent, f".{dest.name}.old-")
            os.replace(dest, old / dest.name)
            os.replace(found, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(found, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


# ----------------------------------------------------------------------------------------------------------
# the command
# ----------------------------------------------------------------------------------------------------------


def dataset_paths(dataset: str, root: str | os.PathLike[str]) -> tuple[Archive, Path, Path]:
    """``(archive, archive file, dataset folder)`` for ``--root``: the folder that holds ``NYUD_MT`` (or the
    ``NYUD_MT`` folder itself, when ``--root`` ends with that name)."""
    if dataset not in ARCHIVES:
        raise DownloadError(f"unknown dataset {dataset!r}; valid datasets: {sorted(ARCHIVES)}")
    archive = ARCHIVES[dataset]
    root = Path(root)
    parent = root.parent if root.name == archive.folder else root
    return archive, parent / archive.filename, parent / archive.folder


def manual_instructions(archive: Archive, archive_path: Path, folder: Path, url: str) -> str:
    """How to install the dataset by hand when the download is impossible."""
    others = ([archive.url] if url != archive.url else []) + list(archive.other_sources)
    sources = "\n".join(f"       or from {s}" for s in others)
    return (
        f"To install {archive.folder} by hand:\n"
        f"  1. on a machine with network access, download {archive.filename} from\n"
        f"       {url}\n" + (sources + "\n" if sources else "") +
        f"  2. copy it to {archive_path}\n"
        f"  3. run `medusa data download {archive.dataset} --root {archive_path.parent}` again: it verifies and\n"
        f"     extracts the file already there, without the network\n"
        f"     (or extract it yourself so that {folder}/ holds {', '.join(archive.markers)}, ... and run\n"
        f"     `medusa data check --dataset {archive.dataset} --root {folder}`)"
    )  # fmt: skip


def download_dataset(
    dataset: str,
    root: str | os.PathLike[str],
    url: str | None = None,
    sha256: str | None = None,
    force: bool = False,
    retries: int = 3,
    retry_wait: float = 2.0,
    timeout: float = 60.0,
    check: bool = True,
    max_samples: int | None = None,
    keep_archive: bool = True,
    log: Callable[[str], None] = print,
) -> int:
    """Download, verify, extract and check one dataset; returns the exit code (0 = ready, 1 = check problems).

    Args:
        dataset: ``nyud`` or ``pascal``.
        root: folder that receives ``<archive>`` and the dataset folder (or the dataset folder itself).
        url: download from this mirror instead of :data:`ARCHIVES`' URL.
        sha256: the expected sha256 (overrides :data:`ARCHIVES`' value).
        force: download and extract again even if the dataset folder exists.
        retries, retry_wait, timeout: see :func:`fetch`.
        check: validate the extracted folder like ``medusa data check``.
        max_samples: check only the first N ids of each split.
        keep_archive: keep the archive after extraction (needed to re-extract without downloading).
        log: where progress goes.
    """
    archive, archive_path, folder = dataset_paths(dataset, root)
    url = url or archive.url
    expected = _normalise_sha256(sha256, "--sha256") or archive.sha256
    folder.parent.mkdir(parents=True, exist_ok=True)

    if folder.exists() and not force:
        log(f"{folder} already exists: not downloading (use --force to download and extract again)")
    else:
        downloaded = False
        if archive_path.is_file() and not force:
            log(f"using the archive already there: {archive_path}")
            digest = sha256_file(archive_path)
            reference = expected or read_recorded_sha256(archive_path)
            if reference is not None and digest != reference:
                raise ChecksumMismatch(
                    f"{archive_path} has sha256 {digest}, expected {reference}: the file is corrupt or another "
                    "file; delete it (and its .sha256) and run the command again"
                )
        else:
            if force and archive_path.is_file():
                archive_path.unlink()
            log(f"downloading {url}\n  -> {archive_path}")
            try:
                digest = fetch(url, archive_path, expected, retries, retry_wait, timeout, log)
            except ChecksumMismatch:
                raise
            except DownloadError as err:
                raise DownloadError(f"{err}\n{manual_instructions(archive, archive_path, folder, url)}") from None
            downloaded = True
        log(f"extracting to {folder}")
        try:
            extract_atomic(archive_path, folder, archive, force=force)
        except DownloadError as err:
            if downloaded:  # corrupted in transit although complete: the next run downloads it again
                archive_path.unlink()
                raise DownloadError(f"{err} (the downloaded file was deleted)") from None
            raise
        if expected is not None:
            log(f"sha256 {digest}: verified")
        elif read_recorded_sha256(archive_path) is None:
            rec = write_recorded_sha256(archive_path, digest)
            log(
                f"sha256 {digest} (written to {rec}).\n  NOT VERIFIED: no published checksum is known for "
                f"{archive.filename}; pass --sha256 to check against a value you trust"
            )
        else:
            log(f"sha256 {digest}: matches {archive_path.name}.sha256, recorded when it was first extracted")
        if not keep_archive:
            archive_path.unlink()
        log(f"{folder} is ready: use --data.root {folder}")

    if not check:
        return 0
    from .check import run_check

    log(f"checking {folder} (as `medusa data check --dataset {archive.dataset} --root {folder}`)")
    return run_check(folder, archive.dataset, max_samples=max_samples, print_fn=log)


def add_download_arguments(parser: Any) -> None:
    """Options of ``medusa data download``."""
    parser.add_argument("dataset", choices=sorted(ARCHIVES), help="which dataset")
    parser.add_argument("--root", default="data", type=output_dir,
                        help="folder that receives the archive and the dataset folder "
                        "(default: data -> data/NYUD_MT, data/PASCAL_MT)")
    parser.add_argument("--url", default=None, help="download from this URL (a mirror) instead of the published one")
    parser.add_argument("--sha256", default=None, help="expected sha256 of the archive (verified)")
    parser.add_argument("--force", action="store_true", help="download and extract again, replacing the folder")
    parser.add_argument("--retries", type=nonnegative_int, default=3,
                        help="further attempts after a failure (default 3)")
    parser.add_argument("--retry-wait", type=nonnegative_float, default=2.0,
                        help="seconds before the first retry (doubles)")
    parser.add_argument("--timeout", type=positive_float, default=60.0, help="network timeout in seconds")
    parser.add_argument("--no-check", action="store_true", help="skip the dataset check after extraction")
    parser.add_argument("--max-samples", type=positive_int, default=None, help="check only the first N ids per split")
    parser.add_argument("--delete-archive", action="store_true", help="delete the archive after extraction")


def run_download(args: Any) -> int:
    """``medusa data download``: exit code 0 when the dataset is in place and valid, 1 when the check found
    problems (errors such as an unreachable network are raised as :class:`DownloadError`)."""
    def log(message: str) -> None:
        print(message, flush=True)

    return download_dataset(
        args.dataset, args.root, url=args.url, sha256=args.sha256, force=args.force, retries=args.retries,
        retry_wait=args.retry_wait, timeout=args.timeout, check=not args.no_check, max_samples=args.max_samples,
        keep_archive=not args.delete_archive, log=log,
    )  # fmt: skip

