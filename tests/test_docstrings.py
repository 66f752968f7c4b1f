"""The docstrings' examples run: every ``>>>`` example in the package is executed as a doctest.

A docstring example is the first code a user copies; one that has drifted from the API fails here, not in their
session. Examples that need data, a download or minutes of training are marked ``# doctest: +SKIP`` in place.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import medusa_mtl


def _modules_with_examples() -> list[str]:
    names = [medusa_mtl.__name__]
    names += [m.name for m in pkgutil.walk_packages(medusa_mtl.__path__, prefix=medusa_mtl.__name__ + ".")]
    finder = doctest.DocTestFinder()
    out = []
    for name in sorted(names):
        if name.endswith("__main__"):
            continue  # runs the CLI on import
        module = importlib.import_module(name)
        if any(t.examples for t in finder.find(module)):
            out.append(name)
    return out


MODULES = _modules_with_examples()


def test_examples_are_found() -> None:
    # The finder itself works: the package's model zoo documents create_model with an example.
    assert "medusa_mtl.models.factory" in MODULES, MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(module, optionflags=flags, report=False, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring example(s) in {name} failed " \
                               f"(run `python -m doctest -v` on it for the details)"
