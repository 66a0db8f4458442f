# The two commands a newcomer needs: `make demo` and `make test`. Both start from nothing
# but Python >= 3.11 and make: they create .venv, install the project, start the embedded runtime.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck schemas-check unit integration dev-up dev-down clean bench bench-quick bench-replay

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

## bench: the processor benchmark (~10 min): pipeline vs no-op Faust vs naive consumer, 2 workers,
## latency at 500 events/s, memory with 10,000 patients; rewrites the figures in docs/benchmarks.md
bench: $(STAMP)
	$(BIN)/python -m tests.bench

## bench-quick: the same in ~2 min on less data; prints only (docs/benchmarks.md keeps the full run)
bench-quick: $(STAMP)
	$(BIN)/python -m tests.bench --quick

## bench-replay: the offline backtest (`iopcare replay`) alone, no broker (~3 min): decode, fold, rules,
## lifecycle and the whole command, 1 and N processes; rewrites its section of docs/benchmarks.md
bench-replay: $(STAMP)
	$(BIN)/python -m tests.bench --only replay

clean: dev-down
	rm -rf $(VENV) .iopcare
