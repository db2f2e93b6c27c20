# make demo  - seed the pilot city on SQLite (points.db: a year of history, about 20 s), print a
#              one-time way in for each role (points demo), and serve until Ctrl-C
# make test  - lint (ruff, import contracts), type-check and run every test (PostgreSQL too when POINTS_TEST_POSTGRES_URL is set)
# make bench - python -m bench ledger (not part of the tests; python -m bench city times the demo)
#
# Each creates .venv when it is missing and installs exactly the versions in constraints.txt: the
# demo only what the system runs on; test and bench add their extras (pyproject.toml).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.installed-runtime
TESTING := $(VENV)/.installed-test
BENCHING := $(VENV)/.installed-bench

.PHONY: demo test lint typecheck unit fuzz bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUNTIME): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable .
	touch $@

$(TESTING): $(RUNTIME)
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable '.[test]'
	touch $@

$(BENCHING): $(RUNTIME)
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable '.[bench]'
	touch $@

demo: $(RUNTIME)
	$(BIN)/points demo

lint: $(TESTING)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(TESTING)
	$(BIN)/mypy

# The test files run in parallel, one worker per core (WORKERS=1 for one process): each test
# has its own database (SQLite file or PostgreSQL database from a template), each live server its
# own port. --dist loadfile keeps a file's module-scoped city on one worker.
WORKERS ?= auto

unit: $(TESTING)
	$(BIN)/pytest -n $(WORKERS) --dist loadfile

test: lint typecheck unit

# Schemathesis over every operation of the OpenAPI document, with each role's token and without.
fuzz: $(TESTING)
	$(BIN)/pytest -m fuzz tests/test_api_schemathesis.py

bench: $(BENCHING)
	$(BIN)/python -m bench ledger

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
