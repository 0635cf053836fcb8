# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv when missing and installs the
# pinned set (constraints.txt) into it; a second run reuses it.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
STATE_DIR := $(or $(CICLO_STATE_DIR),.ciclo)
export PREFECT_HOME ?= $(STATE_DIR)/prefect

.PHONY: help demo up down serve test lint backtest bench-features bench-serve bench-compiled bench-on-demand bench-supervision bench-profiling bench-segments bench-training bench-drift bench-estimation bench-loop bench-operations bench-dask system-packages lock clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

demo: $(INSTALLED) ## The whole loop: drift that holds, concept drift, retrain on new labels, recovery (JSON summary last)
	@mkdir -p $(PREFECT_HOME)
	CICLO_PROFILE_WINDOW_SECONDS=$${CICLO_PROFILE_WINDOW_SECONDS:-20} $(BIN)/python -m flows.demo

# Prometheus is Debian's package: installed here as root (otherwise named), unless CICLO_PROMETHEUS=false.
up: $(INSTALLED) ## Start Prefect (UI on 127.0.0.1:4200), a worker, every deployment, the model server (:3000), Prometheus (:9090)
	@mkdir -p $(PREFECT_HOME)
	@if [ "$${CICLO_PROMETHEUS:-true}" != false ]; then bash .ci/system-packages prometheus; fi
	$(BIN)/python -m cicloml stack up

down: ## Stop exactly what `make up` started
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m cicloml stack down; else echo "nothing to stop (no $(VENV))"; fi

serve: $(INSTALLED) ## Serve the champion on 127.0.0.1:3000 and switch to each new champion with no failed request
	$(BIN)/python -m cicloml serve $(SERVE_ARGS)

test: $(INSTALLED) system-packages ## Run the test suite
	@mkdir -p $(PREFECT_HOME)
	$(BIN)/pytest || [ $$? -eq 5 ]  # 5: no tests collected (e.g. a -k filter), not a failure

lint: $(INSTALLED) ## Check style and imports (ruff)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench-features: $(INSTALLED) system-packages ## Measure materialization and online lookups (prints JSON)
	$(BIN)/python benchmarks/bench_features.py

bench-serve: $(INSTALLED) system-packages ## Load-test the bento (compiled inference on/off) beside FastAPI and MLflow 3 with wrk (JSON)
	$(BIN)/python benchmarks/bench_serve.py

bench-compiled: $(INSTALLED) ## One-row and batch scoring: compiled trees (treelite) beside scikit-learn (prints JSON)
	$(BIN)/python benchmarks/bench_compiled.py

bench-on-demand: $(INSTALLED) system-packages ## On-demand views online beside Feast's own lookup; /predict with them (JSON)
	$(BIN)/python benchmarks/bench_on_demand.py

bench-supervision: $(INSTALLED) ## cicloml serve's recovery from a killed backend, 1 and 2 workers (prints JSON)
	$(BIN)/python benchmarks/bench_supervision.py

bench-profiling: $(INSTALLED) system-packages ## The bento with traffic profiling on vs off under wrk (prints JSON)
	$(BIN)/python benchmarks/bench_profiling.py

bench-segments: $(INSTALLED) system-packages ## Traffic records written every second vs every minute under wrk (JSON)
	$(BIN)/python benchmarks/bench_profiling.py --compare segments

bench-drift: $(INSTALLED) ## Drift detection quality and cost on seeded data, beside Evidently's preset (prints JSON)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[bench]'
	$(BIN)/python benchmarks/bench_drift.py

bench-estimation: $(INSTALLED) ## Estimated vs realized ROC AUC before labels on the demo world, beside NannyML (JSON)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[bench-cbpe]'
	$(BIN)/python benchmarks/bench_estimation.py

bench-loop: $(INSTALLED) ## The loop replayed over 20 seeded worlds: cicloml's rules beside weekly, never, oracle (JSON)
	$(BIN)/python benchmarks/bench_loop.py

backtest: $(INSTALLED) ## Replay 16 weeks of a seeded world under each retraining policy; picture and page in the state folder
	$(BIN)/python -m cicloml backtest $(BACKTEST_ARGS)

bench-training: $(INSTALLED) ## Measure Prefect's share of the train flow and batch-scoring rows/s (prints JSON)
	@mkdir -p $(PREFECT_HOME)
	$(BIN)/python benchmarks/bench_training.py

bench-dask: $(INSTALLED) ## The drift flow over 20 model versions on the Dask task runner vs threads (prints JSON)
	@mkdir -p $(PREFECT_HOME)
	$(BIN)/python benchmarks/bench_dask.py

bench-operations: $(INSTALLED) ## Time make up to healthy, and scheduled runs' start latency beside runs asked for now (JSON)
	@mkdir -p $(PREFECT_HOME)
	$(BIN)/python benchmarks/bench_operations.py

system-packages: ## Install the Debian packages the tests use (as root), or say which are missing
	@bash .ci/system-packages

# torch goes first and pinned: its CPU build lies on this disk, and anything looser pulls a multi-GB CUDA build.
$(INSTALLED): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt torch
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $@

lock: $(INSTALLED) ## Re-pin constraints.txt from the current environment (after changing pyproject.toml)
	$(BIN)/pip freeze --exclude-editable > constraints.txt

clean: ## Remove local state (.ciclo) — models, data, Feast registry, Prefect database
	rm -rf $(STATE_DIR)
