# The two set-up commands from the README: `make demo` and `make test`.
# Both build their own virtual environment from pyproject.toml on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/detente demo

test: $(STAMP)
	$(BIN)/python -m pytest -n auto --dist loadfile $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check detente tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/sandbox_rate.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
