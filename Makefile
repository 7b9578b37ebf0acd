# The two commands: `make run` (a full local sync) and `make test` (lint, types, tests).
# Both set everything up on a fresh clone: the virtual environment, Python packages, Azurite.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: run test lint types pytest bench setup clean

run: setup
	$(PY) -m sync local $(ARGS)

test: setup lint types pytest

lint: setup
	@echo "== ruff"
	$(VENV)/bin/ruff check .

types: setup
	@echo "== mypy --strict sync/"
	$(VENV)/bin/mypy

pytest: setup
	@echo "== pytest"
	$(VENV)/bin/pytest $(PYTEST_ARGS)

bench: setup
	$(PY) -m bench $(ARGS)

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@echo "== Python environment in $(VENV)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	@echo "== Azurite (npm ci, pinned in package-lock.json)"
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

clean:
	rm -rf $(VENV) node_modules .local-run .mypy_cache .ruff_cache .pytest_cache
