# metalake developer commands. `make help` lists them.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
DEMO_LAKE ?= ./demo-lake

.DEFAULT_GOAL := help
.PHONY: help demo test test-slow lint format strip-notebooks bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-demo: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[demo]'
	@touch $(VENV)/.installed $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(VENV)/.installed $(VENV)/.installed-demo $@

demo: $(VENV)/.installed-demo ## Create .venv, install with the demo extra, build a demo lake from real data and models
	$(BIN)/metalake --lake $(DEMO_LAKE) demo

test: $(VENV)/.installed-dev ## Create .venv with dev extras, lint, run the whole test suite
	$(MAKE) --no-print-directory lint
	$(BIN)/python -m pytest

test-slow: $(VENV)/.installed-dev ## Run the tests marked slow (none is in `make test`)
	$(BIN)/python -m pytest -m slow || [ $$? -eq 5 ]  # exit 5: no test is marked slow

lint: $(VENV)/.installed-dev ## ruff format --check, ruff check, mypy on src/, the import layers, notebooks without outputs
	$(BIN)/ruff format --check src tests bench notebooks
	$(BIN)/ruff check src tests bench notebooks
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/python notebooks/strip.py --check

format: $(VENV)/.installed-dev ## Apply ruff formatting and fixes
	$(BIN)/ruff format src tests bench notebooks
	$(BIN)/ruff check --fix src tests bench notebooks

strip-notebooks: $(VENV)/.installed-dev ## Remove outputs from notebooks/*.ipynb before committing them
	$(BIN)/python notebooks/strip.py

bench: $(VENV)/.installed-dev ## Run the benchmarks and append their figures to bench/RESULTS.md
	$(BIN)/python bench/bench_append.py
	$(BIN)/python bench/bench_sql_open.py
	$(BIN)/python bench/bench_cli_start.py
	$(BIN)/python bench/bench_tracking.py
	$(BIN)/python bench/bench_jobs.py
	$(BIN)/python bench/bench_datasets.py
	$(BIN)/python bench/bench_kpis.py
	$(BIN)/python bench/bench_lineage.py
	$(BIN)/python bench/bench_api.py
	$(BIN)/python bench/bench_mlflow_server.py

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
