"""Types of the commands' options (argparse ``type=`` functions), checked when the options are parsed.

A command should say "``--out results.txt`` is a file, not a folder" or "``--max-samples`` must be at least 1"
before it loads a checkpoint or trains for an hour, not fail at its first ``mkdir`` with ``NotADirectoryError``
or finish with NaN metrics. A bad value is a usage error (``medusa predict: error: argument --out: ...``, exit 2).

>>> import argparse
>>> parser = argparse.ArgumentParser()
>>> _ = parser.add_argument("--out", type=output_dir)
>>> parser.parse_args(["--out", "results/run1"]).out
PosixPath('results/run1')
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: names a YAML config shipped in the package: ``medusa:model/medusa.yaml`` (``medusa configs`` lists them)
CONFIG_PREFIX = "medusa:"


def _file_ancestor(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` if it is not a folder (no folder can be made below it)."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def _checked(check: Callable[[str], Path]) -> Callable[[str], Path]:
    """A path type whose look at the file system may itself fail (a folder one may not read): usage error too."""

    @functools.wraps(check)
    def wrapper(text: str) -> Path:
        try:
            return check(text)
        except OSError as err:
            raise argparse.ArgumentTypeError(f"cannot check {text}: {err.strerror or err}") from None

    return wrapper


@_checked
def output_dir(text: str) -> Path:
    """An output folder: new or an existing folder, with no file in the way of creating it."""
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is a file, not a folder; choose a folder")
    blocker = _file_ancestor(path)
    if blocker is not None:
        raise argparse.ArgumentTypeError(f"cannot create the folder {text}: {blocker} is a file, not a folder")
    return path


@_checked
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


def _number(text: str, kind: type) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") \
            from None
    if kind is float and value != value:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """A count of at least 1 (images, epochs, samples, batch size)."""
    value = int(_number(text, int))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def nonnegative_int(text: str) -> int:
    """A count that may be 0 (loader workers, retries)."""
    value = int(_number(text, int))
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def positive_float(text: str) -> float:
    """A number above 0 (learning rate, tolerance, timeout)."""
    value = float(_number(text, float))
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text}")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number of at least 0 (a waiting time)."""
    value = float(_number(text, float))
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of 0 or more, got {text}")
    return value


def open_fraction(text: str) -> float:
    """A fraction strictly between 0 and 1 (a share of the images that must leave both parts non-empty)."""
    value = float(_number(text, float))
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {text}")
    return value


def load_yaml(path: str | Path, option: str = "--config") -> Any:
    """The content of the YAML file an option names; invalid YAML is a
    :class:`~medusa_mtl.errors.ConfigError` naming the option, the file and the parser's line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{option}: file not found: {path}")
    return parse_yaml(path.read_text(), f"{option} {path}")


def parse_yaml(text: str, source: str) -> Any:
    """YAML text; invalid YAML is a :class:`~medusa_mtl.errors.ConfigError` starting with ``source`` (the
    option and file it came from) and giving the parser's line."""
    import yaml

    from .errors import ConfigError

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: not valid YAML: {' '.join(str(err).split())}") from None


def config_root() -> Path:
    """The folder of the packaged configs (inside the installed package)."""
    from importlib import resources

    return Path(str(resources.files("medusa_mtl") / "configs"))


def list_configs() -> list[str]:
    """Every packaged config as ``group/name.yaml``, sorted."""
    root = config_root()
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.yaml"))


def resolve_config(ref: str) -> Path:
    """The file a ``medusa:group/name.yaml`` reference names (``.yaml`` may be left out); a plain path is
    returned unchanged. An unknown reference is a :class:`~medusa_mtl.errors.ConfigError` listing the
    packaged configs. (Here, below the commands, so that every command's ``--config`` can resolve them.)"""
    from .errors import ConfigError

    if not ref.startswith(CONFIG_PREFIX):
        return Path(ref)
    name = ref[len(CONFIG_PREFIX):].strip("/")
    if not name.endswith((".yaml", ".yml")):
        name += ".yaml"
    path = config_root() / name
    if ".." in Path(name).parts or not path.is_file():
        raise ConfigError(f"--config {ref}: no packaged config {name!r}; available: {', '.join(list_configs())} "
                          "(`medusa configs` lists them)")
    return path
