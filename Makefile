# Everyday verbs. Every target installs what it needs first (only when pyproject.toml changed).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The CPU build of torch lies on local disk for this pin; an unpinned torch pulls a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
# Data: lenbench.config.default_data_root ($LENBENCH_DATA_DIR, else ../shared/data when there, else ./data).
ARGS ?=
# make ui/server listen on loopback unless HOST is given on make's command line (an exported HOST is ignored).
HOST = 127.0.0.1
PORT ?= 5000
STORE := sqlite:///$(CURDIR)/mlruns/mlflow.db
ARTIFACTS := $(CURDIR)/mlruns/artifacts
# AUTH=1: MLflow's basic-auth app, a login for every request (README, "Sweeps on a Slurm cluster"); its users live
# beside AUTH_CONFIG (used unless MLFLOW_AUTH_CONFIG_PATH names your own), the admin's password and the CSRF key come
# from MLFLOW_AUTH_ADMIN_PASSWORD and MLFLOW_FLASK_SERVER_SECRET_KEY.
AUTH ?=
AUTH_CONFIG := $(CURDIR)/mlruns/basic_auth.ini
SERVE = --backend-store-uri $(STORE) --artifacts-destination $(ARTIFACTS) --host $(HOST) --port $(PORT)$(if $(AUTH), --app-name basic-auth)
define serve_prepare
	mkdir -p $(ARTIFACTS) $(dir $(AUTH_CONFIG))
	@case "$(HOST)" in 127.*|localhost|::1) ;; *) test -n "$(AUTH)" || echo "WARNING: make $@ on HOST=$(HOST) \
	without AUTH=1: anyone who can reach port $(PORT) can read and write every run, and whoever can write a model \
	can run code on each machine that loads it (python -m lenbench.explain, mlflow models predict/serve)" >&2;; esac
	$(if $(AUTH),printf '[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///$(dir $(AUTH_CONFIG))basic_auth.db\nadmin_username = admin\n' > $(AUTH_CONFIG))
endef
# MLflow's job execution (GenAI scorers, trace roll-ups; seven Huey worker processes, each importing MLflow) is off
# unless MLFLOW_SERVER_ENABLE_JOB_EXECUTION is exported: lenbench uses none of it.
MLFLOW_SERVE = MLFLOW_SERVER_ENABLE_JOB_EXECUTION=$${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false} \
	$(if $(AUTH),MLFLOW_AUTH_CONFIG_PATH=$${MLFLOW_AUTH_CONFIG_PATH:-$(AUTH_CONFIG)} )$(VENV)/bin/mlflow

.PHONY: install train sweep tune paper report readme-tables docs docs-serve ui server cleanup test test-fast lint format bench numerics clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@set -e; start=$$(date +%s); \
	echo "lenbench: installing into $(VENV) (torch, Lightning, MLflow, dev tools): a few minutes, once"; \
	test -x $(PY) || python3 -m venv $(VENV); \
	echo "lenbench: $(TORCH_SPEC), the CPU build"; \
	$(PY) -m pip install -q --disable-pip-version-check "$(TORCH_SPEC)"; \
	echo "lenbench: lenbench and its dependencies (pyproject.toml, with [dev] and [docs])"; \
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,docs]'; \
	touch $(STAMP); echo "lenbench: installed in $$(( $$(date +%s) - start )) s"

train: install  ## the main job: 10-fold MIMIC-II study of the default method (ARGS="method=psi" to change)
	$(PY) -m train $(ARGS)

sweep: install  ## a Hydra multirun, e.g. make sweep ARGS="method=psi seed=0,1,2"
	$(PY) -m train -m $(ARGS)

tune: install  ## accuracy/complexity Pareto front of one method, e.g. make tune ARGS="method=entropy data=mimic"
	$(PY) -m lenbench.tune $(ARGS)

paper: install  ## the notebook's whole study (4 methods), each job's folds in parallel on this machine's cores
	$(PY) -m train -m experiment=mimic_paper $(ARGS)

report: install  ## tables and figures from MLflow (ARGS="--experiment mimic --sweep-id ...")
	$(PY) -m lenbench.report $(ARGS)

readme-tables: install  ## the README's results tables, regenerated from the committed results/ (ARGS=--check compares)
	$(PY) -m lenbench.report.readme $(ARGS)

# The site: mkdocs.yml and docs/ (the README's snippet and the API reference from src/ too); strict: a broken link,
# anchor, snippet or mkdocstrings reference fails the build. make docs-serve PORT=8001 moves it (default 8000, not
# the MLflow UI's 5000).
DOCS_PORT = $(if $(filter command line,$(origin PORT)),$(PORT),8000)
MKDOCS = NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs

docs: install  ## the documentation site (docs/, mkdocs.yml), built with mkdocs build --strict into site/
	$(MKDOCS) build --strict --site-dir site $(ARGS)

docs-serve: install  ## the documentation site, rebuilt on every change, on http://$(HOST):$(DOCS_PORT)
	$(MKDOCS) serve --strict --dev-addr $(HOST):$(DOCS_PORT) $(ARGS)

ui: install  ## the MLflow UI over the project's store (artifacts in mlruns/artifacts), on http://$(HOST):$(PORT)
	$(serve_prepare)
	@echo "Open http://$(HOST):$(PORT)/#/experiments?workflowType=machine_learning (MLflow's Model training view)"
	$(MLFLOW_SERVE) ui $(SERVE)

# Clients upload artifacts through the server (mlflow-artifacts:/), which keeps them in $(ARTIFACTS).
server: install  ## a tracking server for parallel jobs: export MLFLOW_TRACKING_URI=http://$(HOST):$(PORT) (AUTH=1: a login)
	$(serve_prepare)
	$(MLFLOW_SERVE) server $(SERVE)

cleanup: install  ## close runs left RUNNING by a process that died (kill -9, power loss); ARGS=--dry-run only lists
	$(PY) -m lenbench.tracking.cleanup $(ARGS)

# One pytest worker per core (at most 4: each end-to-end test runs jobs that use every core themselves).
PYTEST_WORKERS ?= -n auto --maxprocesses 4 --dist worksteal
# Only the plugins the suite uses (xdist, hypothesis): pytest rewrites the asserts of every module of each autoloaded
# plugin's distribution (all of hydra, anyio, platformdirs) as they are imported, from source wherever byte code is
# not written (PYTHONDONTWRITEBYTECODE): about 6 s of CPU per worker.
PYTEST = PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 $(PY) -m pytest -p xdist.plugin -p _hypothesis_pytestplugin

test: install  ## every test, the slow real-protocol ones included
	$(PYTEST) -q $(PYTEST_WORKERS) $(ARGS)

test-fast: install  ## the quick loop (about a minute): no real-protocol or end-to-end job tests
	$(PYTEST) -q $(PYTEST_WORKERS) -m "not slow and not e2e" $(ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

numerics: install  ## do MKL_CBWR / ATEN_CPU_CAPABILITY change results, and at what cost (~5 min): benchmarks/results/numerics-<cpu>.json
	$(PY) benchmarks/numerics.py $(ARGS)

bench: install  ## speed benchmarks (ARGS=--quick: folds 0-1; ARGS="--batching fast"): benchmarks/results/latest.json + a dated copy, then make readme-tables
	$(PY) benchmarks/bench.py $(ARGS)

clean:
	rm -rf outputs multirun site .pytest_cache .ruff_cache build src/*.egg-info
