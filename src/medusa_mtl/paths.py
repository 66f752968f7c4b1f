"""Output paths given on the command line, checked when the options are parsed.

A command that writes into ``--out`` should say "``--out results.txt`` is a file, not a folder" before it loads a
checkpoint or trains for an hour, not fail at its first ``mkdir`` with ``NotADirectoryError``. These are argparse
``type=`` functions: a bad path is a usage error (``medusa predict: error: argument --out: ...``, exit 2).

>>> import argparse
>>> parser = argparse.ArgumentParser()
>>> _ = parser.add_argument("--out", type=output_dir)
>>> parser.parse_args(["--out", "results/run1"]).out
PosixPath('results/run1')
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _file_ancestor(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` if it is not a folder (no folder can be made below it)."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def output_dir(text: str) -> Path:
    """An output folder: new or an existing folder, with no file in the way of creating it."""
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is a file, not a folder; choose a folder")
    blocker = _file_ancestor(path)
    if blocker is not None:
        raise argparse.ArgumentTypeError(f"cannot create the folder {text}: {blocker} is a file, not a folder")
    return path


def output_file(text: str) -> Path:
    """An output file: its name given, not an existing folder, with no file in the way of its parent folders."""
    path = Path(text).expanduser()
    if path.is_dir() or not path.name or text.endswith(("/", "\\")):
        what = "is a folder" if path.is_dir() else "names no file"
        raise argparse.ArgumentTypeError(f"{text} {what}; give the path of a file to write")
    blocker = _file_ancestor(path)
    if blocker is not None:
        raise argparse.ArgumentTypeError(f"cannot write {text}: {blocker} is a file, not a folder")
    return path
