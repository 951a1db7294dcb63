# Herald's two commands: `make demo` (the main job end to end on the local stack) and `make test`.
# Both create .venv and install the project on first use (or when pyproject.toml changes).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test up down clean bench

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/herald demo

test: $(STAMP)
	$(PY) -m pytest

up: $(STAMP)
	$(VENV)/bin/herald local up --seed

down: $(STAMP)
	$(VENV)/bin/herald local down

bench: $(STAMP)
	$(VENV)/bin/herald bench

clean:
	rm -rf $(VENV) .herald dbt/target dbt/logs
