# The two commands a fresh clone needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SOURCES := vault crypto workers
CHECKED := $(SOURCES) tests bench

.PHONY: run test lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Stamps are keyed on pyproject.toml, so a changed dependency list reinstalls.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/datavault serve

lint: $(VENV)/.installed-test
	$(BIN)/ruff check $(CHECKED)
	$(BIN)/ruff format --check $(CHECKED)

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy $(SOURCES)

# pytest exits 5 when it collects nothing; make treats any non-zero exit as failure.
pytest: $(VENV)/.installed-test
	$(BIN)/pytest

test: lint typecheck pytest

bench: $(VENV)/.installed-test
	$(BIN)/python bench/crypto_bench.py

clean:
	rm -rf $(VENV) .datavault .pytest_cache .mypy_cache .ruff_cache
