# Everyday verbs. Every target installs what it needs first (only when pyproject.toml changed).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The CPU build of torch lies on local disk for this pin; an unpinned torch pulls a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
# Data: ../shared/data when it is there (CI, developers), else ./data (downloaded from PhysioNet on first use).
LENBENCH_DATA_DIR ?= $(if $(wildcard ../shared/data/mimic-ii/full_cohort_data.csv),$(abspath ../shared/data),$(CURDIR)/data)
export LENBENCH_DATA_DIR
ARGS ?=

.PHONY: install train test test-fast lint format clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "$(TORCH_SPEC)"
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

train: install  ## the main job: 10-fold MIMIC-II study of the default method (ARGS="method=psi" to change)
	$(PY) -m train $(ARGS)

test: install  ## every test, the slow real-protocol ones included
	$(PY) -m pytest -q $(ARGS)

test-fast: install
	$(PY) -m pytest -q -m "not slow" $(ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf outputs multirun .pytest_cache .ruff_cache build src/*.egg-info
