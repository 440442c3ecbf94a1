# MedSyn: two commands, each doing its own set-up in a project-local virtual environment.
#   make run   -> launch the app on http://localhost:8501 with the bundled data
#   make test  -> run the whole (fast) test suite
#   make api   -> serve the REST API on http://localhost:8000 (docs at /docs; docs/api.md)
#   make serve -> the app and the API together (deploy/start.sh; what the Docker image runs)
# The venv is created if missing and reinstalled only when the requirement files change.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUN_STAMP := $(VENV)/.run-installed
DEV_STAMP := $(VENV)/.dev-installed
PORT ?= 8501

API_PORT ?= 8000

.PHONY: run api serve openapi test test-slow lint bench venv clean-venv

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

api: $(RUN_STAMP)
	$(PY) -m medsyn_cli.main api --port $(API_PORT)

serve: $(RUN_STAMP)
	PYTHON=$(PY) deploy/start.sh

openapi: $(RUN_STAMP)
	$(PY) -m medsyn_api.openapi docs/openapi.json

test: $(DEV_STAMP)
	$(PY) -m pytest

test-slow: $(DEV_STAMP)
	$(PY) -m pytest -m slow

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .

clean-venv:
	rm -rf $(VENV)
