# Herald's two commands: `make demo` (the main job end to end on the local stack) and `make test`.
# Both create .venv and install the project on first use (or when pyproject.toml changes).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# checkov installs its own fork of the hcl2 module, which shadows python-hcl2 (the dev extra,
# used by tests/terraform_test.py): it gets a virtualenv of its own, which the tests call.
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)

.PHONY: demo test test-fast up down clean bench

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

$(CHECKOV_STAMP):
	rm -rf $(CHECKOV_VENV)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet 'checkov==$(CHECKOV_VERSION)'
	@touch $(CHECKOV_STAMP)

demo: $(STAMP)
	$(VENV)/bin/herald demo

test: $(STAMP) $(CHECKOV_STAMP)
	$(PY) -m pytest

# The inner loop: no emulators, no local stack (CI runs `make test`, the whole suite).
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow and not emulators"

up: $(STAMP)
	$(VENV)/bin/herald local up --seed

down: $(STAMP)
	$(VENV)/bin/herald local down

bench: $(STAMP)
	$(VENV)/bin/herald bench

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .herald dbt/target dbt/logs
