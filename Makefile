# The two commands of the README: `make demo` (the main job) and `make test` (the suite).
# Both create or refresh .venv from the pinned constraints when pyproject.toml or
# constraints.txt changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DATA ?= data/demo
DEMO_STORE ?= data/store
DEMO_OUT ?= data/artifacts
SEED ?= 7
NAD := $(BIN)/nad

export PYTHONPATH := $(CURDIR)
export TF_CPP_MIN_LOG_LEVEL := 2
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: venv demo test test-fast lint format bench-generate bench-nsl-kdd calibrate clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(NAD) generate --out $(DEMO_DATA) --preset demo --seed $(SEED)
	$(NAD) pipeline --source $(DEMO_DATA) --store $(DEMO_STORE) --out $(DEMO_OUT) --preset default --score --truth $(DEMO_DATA)/truth
	$(NAD) score $(DEMO_DATA)/01*_firewall.csv --truth $(DEMO_DATA)/truth --out $(DEMO_OUT)/scores/baseline \
		--model $(DEMO_OUT)/runs/latest/baseline > /dev/null
	@echo; echo "== test days, fused model (champion) =="; $(NAD) evaluate $(DEMO_OUT)/scores --truth $(DEMO_DATA)/truth
	@echo; echo "== test days, baseline (latest run) =="; $(NAD) evaluate $(DEMO_OUT)/scores/baseline --truth $(DEMO_DATA)/truth
	@echo; echo "MLflow UI:  $(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db -h 127.0.0.1 -p 5000"
	@echo "Prefect UI: PREFECT_HOME=$(PREFECT_HOME) $(BIN)/prefect server start --host 127.0.0.1  (flow runs of this demo)"

test: venv
	$(BIN)/pytest -q

# The suite without the tests marked slow (trained nets, Prefect servers, separate clusters).
test-fast: venv
	$(BIN)/pytest -q -m "not slow"

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench-generate: venv
	$(BIN)/python benchmarks/bench_generate.py

bench-nsl-kdd: venv
	$(BIN)/python benchmarks/bench_nsl_kdd.py

calibrate: venv
	$(BIN)/python benchmarks/calibrate_generator.py

clean:
	rm -rf $(VENV) data .prefect .pytest_cache
