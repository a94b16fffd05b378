# The two commands of the README: `make demo` (the main job) and `make test` (the suite).
# Both create or refresh .venv from the pinned constraints when pyproject.toml or
# constraints.txt changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DATA ?= data/demo
SEED ?= 7

export PYTHONPATH := $(CURDIR)
export TF_CPP_MIN_LOG_LEVEL := 2
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: venv demo test lint format bench-generate calibrate clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/nad generate --out $(DEMO_DATA) --preset demo --seed $(SEED)

test: venv
	$(BIN)/pytest -q

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench-generate: venv
	$(BIN)/python benchmarks/bench_generate.py

calibrate: venv
	$(BIN)/python benchmarks/calibrate_generator.py

clean:
	rm -rf $(VENV) data .prefect .pytest_cache
