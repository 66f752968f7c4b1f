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


# every command that writes somewhere, with the option that says where and whether it names a folder or a file
OUTPUT_OPTIONS = [
    (["predict"], "--out", "folder"), (["resources"], "--out", "folder"), (["ufl"], "--out", "folder"),
    (["benchmark"], "--out", "folder"), (["pretrain"], "--cache-dir", "folder"),
    (["data", "synth", "--dataset", "nyud"], "--root", "folder"), (["data", "example"], "--out", "folder"),
    (["data", "import"], "--out", "folder"), (["data", "download", "nyud"], "--root", "folder"),
    (["benchmark"], "--data-dir", "folder"), (["benchmark"], "--pretrain-cache", "folder"),
    (["evaluate"], "--out", "file"), (["export"], "--out", "file"), (["convert"], "--out", "file"),
    (["data", "show"], "--out", "file"),
]


@pytest.mark.parametrize(("argv", "option", "kind"), OUTPUT_OPTIONS,
                         ids=lambda v: "-".join(v) if isinstance(v, list) else v)
def test_an_output_path_blocked_by_a_file_or_folder_is_a_usage_error(tmp_path, argv: list[str], option: str,
                                                                      kind: str) -> None:
    """A file where a folder must go (or a folder where a file must go) is named when the options are parsed,
    before any work, instead of a NotADirectoryError / IsADirectoryError traceback at the first write."""
    blocker = tmp_path / "taken.txt"
    blocker.write_text("not a folder")
    below = blocker / ("sub" if kind == "folder" else "out.json")
    cases = [(below, "taken.txt is a file, not a folder")]
    cases.append((blocker, "is a file, not a folder") if kind == "folder" else (tmp_path, "is a folder"))
    for path, message in cases:
        rc, out, err = run_cli([*argv, option, str(path)])
        assert rc == 2, (path, out, err)
        assert f"argument {option}: " in err and message in err, err
        assert "Traceback" not in err
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize(("argv", "message"), [
    (["evaluate", "--max-samples", "0"], "argument --max-samples: must be at least 1, got 0"),
    (["evaluate", "--num-workers", "-1"], "argument --num-workers: must be 0 or more, got -1"),
    (["evaluate", "--sal-beta2", "0"], "argument --sal-beta2: must be a number above 0, got 0"),
    (["resources", "--max-tasks", "0", "--models", "no_such_model"], "argument --max-tasks: must be at least 1, got 0"),
    (["data", "import", "--val-fraction", "0"], "argument --val-fraction: must lie strictly between 0 and 1, got 0"),
    (["data", "synth", "--num-train", "0"], "argument --num-train: must be at least 1, got 0"),
    (["data", "show", "--num", "0"], "argument --num: must be at least 1, got 0"),
    (["pretrain", "--lr", "nan", "--size", "50x50"], "argument --lr: expected a number, got 'nan'"),
    (["ufl", "--epochs", "two"], "argument --epochs: expected an integer, got 'two'"),
    (["ufl", "--warmup-epochs", "-1"], "argument --warmup-epochs: must be a number of 0 or more, got -1"),
    (["benchmark", "--jobs", "0", "--profile", "no-such-profile.yaml"], "argument --jobs: must be at least 1, got 0"),
    (["data", "download", "--retry-wait", "-1"], "argument --retry-wait: must be a number of 0 or more, got -1"),
])
def test_a_count_or_fraction_out_of_range_is_a_usage_error(tmp_path, monkeypatch, argv: list[str],
                                                            message: str) -> None:
    """Checked when the options are parsed, before any work (``evaluate --max-samples 0`` had finished with NaN
    metrics and exit 0; ``data import --val-fraction 0`` wrote an empty val split). The extra options make a
    command that did start fail fast, and it runs in a scratch folder."""
    monkeypatch.chdir(tmp_path)
    rc, _, err = run_cli(argv)
    assert rc == 2 and message in err, err
    assert "Traceback" not in err


def test_an_output_path_that_cannot_be_looked_at_is_a_usage_error(tmp_path, monkeypatch) -> None:
    """A folder one may not read makes ``Path.exists`` raise PermissionError (as a normal user; the tests may run
    as root, so it is simulated): still a usage error, not a traceback from the option parser."""
    import pathlib

    locked = tmp_path / "locked"
    real = pathlib.Path.exists

    def exists(self: pathlib.Path, *args, **kwargs) -> bool:
        if locked in (self, *self.parents):
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "exists", exists)
    rc, _, err = run_cli(["predict", "--out", str(locked / "x")])
    assert rc == 2 and f"argument --out: cannot check {locked / 'x'}: Permission denied" in err, err


def test_python_dash_m_runs_the_command() -> None:
    """``python -m medusa_mtl`` is the ``medusa`` command (it was "No module named medusa_mtl.__main__")."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "medusa_mtl", "--version"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == f"medusa-mtl {__version__}", done.stderr


@pytest.mark.parametrize("argv", [["configs"], ["configs", "model/medusa.yaml"]])
def test_output_piped_into_a_reader_that_leaves_ends_quietly(argv: list[str]) -> None:
    """``medusa configs | head -1``: the reader closes the pipe before the command has written everything; that
    ended in a BrokenPipeError traceback (and a second one when Python flushed stdout at exit)."""
    import os
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)  # the reader has already left
    try:
        done = subprocess.run([sys.executable, "-m", "medusa_mtl", *argv], stdout=write, stderr=subprocess.PIPE,
                              text=True, timeout=120)
    finally:
        os.close(write)
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
    assert done.returncode == 141  # as a shell reports a command stopped by SIGPIPE
