"""The YAML configs that ship inside the package, addressable without a clone.

``medusa:<group>/<name>.yaml`` names a packaged config (``medusa:model/medusa.yaml``,
``medusa:data/synthetic_nyud.yaml``); ``medusa configs`` lists them and ``medusa configs model/medusa.yaml``
prints one. ``medusa fit|validate|test --config medusa:...`` resolves the reference to the installed file, so the
same command works in a clone and after ``pip install``. The ``benchmark/`` group holds the profiles of
``medusa benchmark --profile NAME``, not ``--config`` files; they are listed (and printed) apart.

Example:
    >>> from medusa_mtl.cli.configs import resolve_config
    >>> resolve_config("medusa:model/medusa.yaml").name
    'medusa.yaml'
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError
from ..options import CONFIG_PREFIX as PREFIX
from ..options import config_root, list_configs, resolve_config

#: the group of benchmark profiles (``medusa benchmark --profile NAME``), which are not LightningCLI configs
PROFILE_GROUP = "benchmark"
#: the config option of ``medusa fit|validate|test`` and its short alias
CONFIG_FLAGS = ("--config", "-c")

__all__ = ["CONFIG_FLAGS", "PREFIX", "config_files", "config_root", "list_configs", "resolve_config",
           "resolve_config_args"]


def _lightning() -> list[str]:
    return [n for n in list_configs() if not n.startswith(PROFILE_GROUP + "/")]


def _profiles() -> list[str]:
    return [n for n in list_configs() if n.startswith(PROFILE_GROUP + "/")]


def _attached_config(arg: str) -> tuple[str, str] | None:
    """``(flag, value)`` of a config option given with its value in one word (``--config=F``, ``-c=F``, ``-cF``,
    as the parser accepts them); None for any other word."""
    for flag in ("--config=", "-c="):
        if arg.startswith(flag):
            return flag, arg[len(flag):]
    if arg.startswith("-c") and len(arg) > 2:
        return "-c", arg[2:]
    return None


def config_files(argv: list[str]) -> list[str]:
    """The value of every ``--config`` / ``-c`` option in ``argv`` (each form the parser accepts)."""
    files: list[str] = []
    expect_value = False
    for arg in argv:
        if expect_value:
            files.append(arg)
            expect_value = False
        elif arg in CONFIG_FLAGS:
            expect_value = True
        elif (attached := _attached_config(arg)) is not None:
            files.append(attached[1])
    return files


def resolve_config_args(argv: list[str]) -> list[str]:
    """``argv`` with every ``medusa:...`` value of ``--config`` (or its alias ``-c``, in each form the parser
    accepts: ``--config F``, ``--config=F``, ``-c F``, ``-c=F``, ``-cF``) replaced by the packaged file."""
    out: list[str] = []
    expect_value = False
    for arg in argv:
        if expect_value:
            out.append(str(_lightning_config(arg)))
            expect_value = False
        elif arg in CONFIG_FLAGS:
            out.append(arg)
            expect_value = True
        elif (attached := _attached_config(arg)) is not None:
            out.append(attached[0] + str(_lightning_config(attached[1])))
        else:
            out.append(arg)
    return out


def _lightning_config(ref: str) -> Path:
    path = resolve_config(ref)
    if ref.startswith(PREFIX) and path.parent.name == PROFILE_GROUP:
        raise ConfigError(f"--config {ref}: a benchmark profile, not a training config; run it with "
                          f"`medusa benchmark --profile {path.stem}`")
    return path


def add_configs_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``medusa configs``."""
    parser.add_argument("name", nargs="?", default=None,
                        help="a packaged config to print (e.g. model/medusa.yaml); none: list them all")
    parser.add_argument("--path", action="store_true", help="print the file's path instead of its content")


def run_configs(args: argparse.Namespace) -> int:
    """``medusa configs [NAME] [--path]``."""
    if args.name is None:
        print(f"packaged configs for medusa fit|validate|test (use as --config {PREFIX}<name>), in {config_root()}:")
        for name in _lightning():
            print(f"  {PREFIX}{name}")
        print("benchmark profiles (use as medusa benchmark --profile <name>; `medusa configs benchmark/<name>.yaml` "
              "prints one):")
        for name in _profiles():
            print(f"  {Path(name).stem}")
        return 0
    ref = args.name if args.name.startswith(PREFIX) else PREFIX + args.name
    try:
        path = resolve_config(ref)
    except ConfigError as err:  # its message names --config, an option of the training commands, not of this one
        raise ConfigError(str(err).replace(f"--config {ref}: ", f"{args.name}: ", 1)) from None
    print(path if args.path else path.read_text().rstrip())
    return 0
