# make demo  - run the system on SQLite with seeded data
# make test  - lint (ruff, import contracts), type-check and run every test (PostgreSQL too when POINTS_TEST_POSTGRES_URL is set)
# make bench - python -m bench ledger (not part of the tests)
#
# Both create .venv when it is missing and install exactly the versions in constraints.txt.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test lint typecheck unit fuzz bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(INSTALLED): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable '.[test,bench]'
	touch $@

demo: $(INSTALLED)
	$(BIN)/points db upgrade
	$(BIN)/points demo

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(INSTALLED)
	$(BIN)/mypy

unit: $(INSTALLED)
	$(BIN)/pytest

test: lint typecheck unit

# Schemathesis over every operation of the OpenAPI document, with each role's token and without.
fuzz: $(INSTALLED)
	$(BIN)/pytest -m fuzz tests/test_api_schemathesis.py

bench: $(INSTALLED)
	$(BIN)/python -m bench ledger

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
