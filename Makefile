# MedSyn: two commands, each doing its own set-up in a project-local virtual environment.
#   make run   -> launch the app on http://localhost:8501 with the bundled data
#   make test  -> run the whole (fast) test suite
# The venv is created if missing and reinstalled only when the requirement files change.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUN_STAMP := $(VENV)/.run-installed
DEV_STAMP := $(VENV)/.dev-installed
PORT ?= 8501

.PHONY: run test test-slow lint bench venv clean-venv

$(RUN_STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

$(DEV_STAMP): $(RUN_STAMP) requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

venv: $(DEV_STAMP)

run: $(RUN_STAMP)
	$(VENV)/bin/streamlit run serve.py --server.port $(PORT)

test: $(DEV_STAMP)
	$(PY) -m pytest

test-slow: $(DEV_STAMP)
	$(PY) -m pytest -m slow

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .

clean-venv:
	rm -rf $(VENV)
