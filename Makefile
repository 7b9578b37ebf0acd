# The two commands: `make run` (a full local sync) and `make test` (lint, types, tests, scan).
# Both set everything up on a fresh clone: the virtual environments, Python packages, Azurite.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# checkov has its own environment: its pins conflict with pycep-parser's in .venv.
CHECKOV_VENV := .venv-checkov
ARGS ?=

.PHONY: run test lint types pytest scan bench setup clean chaos soak lock

run: setup
	$(PY) -m sync local $(ARGS)

test: setup lint types pytest scan

lint: setup
	@echo "== ruff"
	$(VENV)/bin/ruff check .

types: setup
	@echo "== mypy --strict sync/"
	$(VENV)/bin/mypy

# Two xdist workers (pyproject.toml addopts); exit code 5 (no test ran) fails it too.
pytest: setup
	@echo "== pytest"
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# checkov over infra/, offline: --skip-download and BC_SKIP_MAPPING keep it off its platform,
# CKV_SKIP_PACKAGE_UPDATE_CHECK off PyPI. Any failed check fails the target, and so does what
# checkov's exit code lets through (tests/infra/scan.py): a check that could not run, a file it
# could not parse. The checks that do not apply are skipped inline, inside the resource, with the
# reason (docs/deploying.md).
scan: $(CHECKOV_VENV)/.installed
	@echo "== checkov over infra/ (offline)"
	BC_SKIP_MAPPING=TRUE CKV_SKIP_PACKAGE_UPDATE_CHECK=TRUE \
	  $(CHECKOV_VENV)/bin/python tests/infra/scan.py $(CHECKOV_VENV)/bin/checkov \
	  --directory infra --framework bicep \
	  --skip-download --skip-results-upload --compact --quiet

# The chaos suite (tests/chaos/, docs/failures.md): the local stack with
# faults injected and processes killed; plain pytest deselects it. Exit code 5 (no test ran)
# fails the target like any other failure. CHAOS_RECORDS sets the records per scenario. It runs
# serially in one process (-n 0): scenarios kill processes and share .local-run/chaos.
chaos: setup
	@echo "== chaos suite"
	$(VENV)/bin/pytest -m chaos tests/chaos -p no:cacheprovider -n 0 $(PYTEST_ARGS)

# The soak (tests/soak/, docs/failures.md "The soak"): thirty nights of one definition on the
# local stack, compressed (the hosts' injected clocks move a day a night), with producers,
# instances started and killed, skewed clocks, a lowered hint, a bug and a refused mapping; it
# prints its table. Serial in one process (-n 0), like the chaos suite; SOAK_NIGHTS shortens it.
soak: setup
	@echo "== soak"
	$(VENV)/bin/pytest -m soak tests/soak -p no:cacheprovider -n 0 $(PYTEST_ARGS)

bench: setup
	$(PY) -m bench $(ARGS)

setup: $(VENV)/.installed node_modules/.installed

# requirements-dev.txt locks the whole tree, runtime included, with hashes; a changed lock
# reinstalls. --require-hashes also fails on any dependency the lock misses.
$(VENV)/.installed: requirements.txt requirements-dev.txt
	@echo "== Python environment in $(VENV) (locked with hashes)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes \
	  -r requirements-dev.txt
	touch $@

# Regenerates both locks from requirements.in and requirements-dev.in (the direct dependencies)
# for Python 3.11, the app's runtime: requirements.txt first, then requirements-dev.txt within
# it. Existing pins stay unless an input needs another; LOCK_ARGS=--upgrade takes the newest.
LOCK_ARGS ?=
UV_COMPILE = $(VENV)/bin/uv pip compile --quiet --python-version 3.11 --generate-hashes \
  --custom-compile-command "make lock" $(LOCK_ARGS)

lock: $(VENV)/.installed
	@echo "== lock: requirements.txt, requirements-dev.txt (uv, with hashes)"
	$(UV_COMPILE) requirements.in -o requirements.txt
	$(UV_COMPILE) requirements-dev.in -o requirements-dev.txt

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	@echo "== checkov environment in $(CHECKOV_VENV) (locked with hashes)"
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
	  --require-hashes --no-deps -r requirements-checkov.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	@echo "== Azurite (npm ci, pinned in package-lock.json)"
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules .local-run .mypy_cache .ruff_cache .pytest_cache
