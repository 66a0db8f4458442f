# The two commands a newcomer needs: `make demo` and `make test`. Both start from nothing
# but Python >= 3.11 and make: they create .venv, install the project, start the embedded runtime.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck schemas-check unit integration dev-up dev-down clean bench

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("iopcare needs Python >= 3.11, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## demo: install, start the embedded broker + Postgres, run the synthetic cohort through the system
demo: $(STAMP)
	$(BIN)/iopcare demo

## test: install with dev extras, lint, type-check, check the schemas, run every test
test: $(STAMP) lint typecheck schemas-check
	$(BIN)/python -m pytest tests --ignore=tests/bench

lint: $(STAMP)
	$(BIN)/ruff check services tests
	$(BIN)/ruff format --check services tests

typecheck: $(STAMP)
	$(BIN)/mypy services/iopcare

schemas-check: $(STAMP)
	$(BIN)/iopcare schemas check

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

integration: $(STAMP)
	$(BIN)/python -m pytest tests/integration

dev-up: $(STAMP)
	$(BIN)/iopcare dev up

dev-down: $(STAMP)
	$(BIN)/iopcare dev down

bench: $(STAMP)
	$(BIN)/python -m tests.bench

clean: dev-down
	rm -rf $(VENV) .iopcare
