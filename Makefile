# keyless — two commands: `make demo` and `make test`. Both set up .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit venv clean bench fuzz fuzz-smoke fuzz-seeds

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/keyless demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck unit

# Fuzzing (tests/fuzz/README.md): every target one after another, each until FUZZ_RUNS inputs or FUZZ_SECONDS
# (the default lets the slowest target, the edge config loader at ~100 inputs/s, reach 10^6; the fast ones stop
# at 10^6 in minutes). `make test` runs the short pass (tests/fuzz/test_fuzz_smoke.py, FUZZ_SMOKE_SECONDS each).
FUZZ_SECONDS ?= 10800
FUZZ_RUNS ?= 1000000
FUZZ_TARGETS ?=

fuzz: $(STAMP)
	$(BIN)/python -m tests.fuzz.campaign --seconds $(FUZZ_SECONDS) --runs $(FUZZ_RUNS) $(FUZZ_TARGETS)

fuzz-smoke: $(STAMP)
	$(BIN)/pytest -q tests/fuzz/test_fuzz_smoke.py

fuzz-seeds: $(STAMP)
	$(BIN)/python -m tests.fuzz.record_hellos tests/fuzz/data/hellos
	$(BIN)/python -m tests.fuzz.make_seeds

bench: $(STAMP)
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build dist src/*.egg-info .mypy_cache .ruff_cache .pytest_cache .fuzz
