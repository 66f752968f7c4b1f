"""Atomic file writes: the bytes go to a temporary file in the target's folder, then ``os.replace`` puts it in
place, so a reader never sees half a file and an interrupted write never replaces a good one.

The temporary file is created like any other file of the process (``0o666`` minus the umask; ``mkstemp`` would
make datasets and checkpoints readable by their owner only), its name carries the writer's pid, and the
leftovers of writers killed mid-write are removed by the next write to the same path where asked (checkpoints).
"""

from __future__ import annotations

import glob
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "atomic_write_bytes", "make_temp_dir", "remove_stale_temps"]

def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")

def remove_stale_temps(path: Path) -> None:
    """Delete the temporary files of writes to ``path`` by processes that no longer run. A running writer's file
    (its pid in the name) is left alone."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            pid = int(tmp.name[len(path.name) + 2:].split(".")[0])
        except ValueError:
            continue
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except OSError:  # another user's process, or no permission to ask: not ours to remove
            continue

@contextmanager
def atomic_write(path: str | os.PathLike[str], fsync: bool = False,
                 remove_stale: bool = False) -> Iterator[BinaryIO]:
    """Open a binary file whose content replaces ``path`` atomically when the block ends without an exception.

    ``remove_stale`` also deletes the temporary files of earlier writers of ``path`` killed mid-write: for files
    rewritten in place (checkpoints); it lists the folder, too slow for the thousands of files of a dataset.

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "a.bin"
    >>> with atomic_write(target) as f:
    ...     _ = f.write(b"data")
    >>> target.read_bytes()
    b'data'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    try:
        with open(tmp, "xb") as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if remove_stale:
        remove_stale_temps(path)

def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path) as f:
        f.write(data)


def make_temp_dir(parent: str | os.PathLike[str], prefix: str) -> Path:
    """A new, empty folder in ``parent`` to fill and then ``os.replace`` into place, created with the process's
    usual permissions (``tempfile.mkdtemp`` makes it ``0o700``: a dataset moved into place from it could not
    be read by anyone else)."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    while True:
        path = parent / f"{prefix}{os.getpid()}.{uuid.uuid4().hex[:8]}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
