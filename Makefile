# One place for the commands the README and CI use.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install lint test run run-keep proto clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'

# ruff (rules in pyproject.toml [tool.ruff]) and mypy ([tool.mypy]) must be clean
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q

run: install
	$(BIN)/python scripts/run_local.py

run-keep: install
	$(BIN)/python scripts/run_local.py --keep

proto: install
	$(BIN)/python scripts/gen_proto.py
