# The two commands of the README: `make demo` and `make test`.
# Both create or update the virtual environment in .venv from pyproject.toml.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.memxr-installed
DEMO_DIR ?= demo_out

.PHONY: demo test lint bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	MEMXR_DEMO_DIR=$(DEMO_DIR) $(BIN)/python -m memxr.demo

test: $(STAMP)
	$(BIN)/ruff check memxr tests benchmarks
	$(BIN)/lint-imports --no-logo
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
