# The two commands: `make demo` (the main job on the synthetic benchmark) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Local wheels on the build machines: keep torch/torchvision at the versions on disk.
PIP_INSTALL := $(BIN)/pip install --disable-pip-version-check -q -c constraints.txt

.PHONY: demo test venv lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP_INSTALL) -e '.[test]'
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(BIN)/medusa benchmark --profile quick --out results

# One worker per core (at most 4): the tests run torch with one thread each (tests/conftest.py), so a serial
# run leaves every core but one idle.
test: venv
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4

lint: venv
	$(BIN)/ruff check src tests benchmarks

bench: venv
	$(BIN)/python benchmarks/synth_speed.py

clean:
	rm -rf $(VENV) results data
