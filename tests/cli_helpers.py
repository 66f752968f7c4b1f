"""Shared test helper: run the ``medusa`` command in-process and capture what it prints."""

from __future__ import annotations

import contextlib
import io

from medusa_mtl.cli import main


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """Run ``medusa <argv>`` in this process; returns (exit code, stdout, stderr).

    A ``SystemExit`` (argparse of the non-Lightning commands) becomes its exit code.
    """
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = int(e.code or 0)
    return rc, out.getvalue(), err.getvalue()
