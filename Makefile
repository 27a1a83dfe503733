# The two commands of the README: `make demo` and `make test`.
# Both create or update the virtual environment in .venv: memxr and its dev tools at the exact
# versions of requirements/lock.txt (the tested set), within the ranges of pyproject.toml.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCK := requirements/lock.txt
STAMP := $(VENV)/.memxr-installed
DEMO_DIR ?= demo_out

.PHONY: demo test lint bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c $(LOCK) pip
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e ".[dev]"
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
