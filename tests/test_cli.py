"""The top of the ``medusa`` command: help, version and an unknown command."""

from __future__ import annotations

import pytest

from cli_helpers import run_cli
from medusa_mtl import __version__
from medusa_mtl.cli import COMMANDS


def test_help_describes_the_package_and_lists_every_command() -> None:
    rc, out, _ = run_cli(["--help"])
    assert rc == 0
    assert out.startswith("usage: medusa")
    assert "Multi-task dense prediction" in out and "universal" in out
    assert "top layer" not in out  # the module's developer docstring is not the user's description
    for name in {n.split()[0] for n in COMMANDS} | {"fit", "validate", "test"}:
        assert f"    {name} " in out or f"    {name}\n" in out, name


def test_version_names_the_distribution() -> None:
    rc, out, _ = run_cli(["--version"])
    assert rc == 0 and out.strip() == f"medusa-mtl {__version__}"


@pytest.mark.parametrize("argv", [["frobnicate"], ["data", "frobnicate"]])
def test_unknown_command_names_it_and_the_choices(argv: list[str]) -> None:
    rc, _, err = run_cli(argv)
    assert rc == 2
    assert "frobnicate" in err and "choose from" in err
