# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint typecheck unit bench bench-large notebooks clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,all]'
	touch $(STAMP)

demo: install
	$(BIN)/allocator demo

LINT_DIRS := $(wildcard src tests benchmarks notebooks)

lint: install
	$(BIN)/ruff check $(LINT_DIRS)
	$(BIN)/ruff format --check $(LINT_DIRS)

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -n 2 --timeout 900

test: lint typecheck unit

# -s: the benchmarks print their tables (cost, bound, gap, ratios) as they go.
bench: install
	$(BIN)/pytest benchmarks -s -m "not large" --benchmark-columns=min,mean,max,rounds -p no:randomly

bench-large: install
	$(BIN)/pytest benchmarks -s -m large --benchmark-columns=min,mean,max,rounds -p no:randomly

notebooks: install
	$(BIN)/jupytext --to ipynb notebooks/*.py

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .pytest_cache .benchmarks
