# offer-ranker: `make demo` runs the whole pipeline on simulated data, `make test` runs the tests.
# Both create .venv and install the pinned dependencies (requirements.lock) with uv.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
RUN ?= runs/demo

export BENTOML_DO_NOT_TRACK := True
export BENTOML_HOME := $(CURDIR)/.bentoml

.PHONY: install system demo serve mlflow-ui test test-all bench lock clean

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv

# Reinstall when the lock file or the package metadata change.
$(VENV)/.installed: requirements.lock pyproject.toml | $(BIN)/uv
	$(BIN)/uv pip sync --quiet --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

install: $(VENV)/.installed

# The whole pipeline on simulated data, then the service on http://localhost:3000 (Ctrl-C stops it).
demo: install
	$(BIN)/offer-ranker quickstart --out $(RUN)
	$(MAKE) --no-print-directory serve

# Serve the `production` bundle (model registry in mlflow.db; bundles in .bentoml) with `bentoml serve`
# (bentofile.yaml -> offer_ranker/serve/service.py).
serve: install
	$(BIN)/bentoml serve --port 3000

# The MLflow UI on the project's training runs and model registry (mlflow.db, or MLFLOW_TRACKING_URI)
# at http://localhost:5000. The project installs only MLflow's client (mlflow-skinny); the UI is the
# full `mlflow` of the same version, which uv runs in an environment of its own (fetched on first use).
mlflow-ui: install
	$(BIN)/uv tool run --from "mlflow==$$($(BIN)/python -c 'from importlib.metadata import version; print(version("mlflow-skinny"))')" \
		mlflow ui --backend-store-uri "$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db}" --port 5000

# Debian packages the tests use, installed when we may (root): headless Chromium renders the SHAP
# report; redis-server backs the online store's Redis tests; a headless JRE runs PySpark in local
# mode (the tests start their own servers and Spark sessions). Each item is package[:command]: the
# package is installed when its command (by default its own name) is missing.
SYSTEM_PACKAGES ?= chromium redis-server default-jre-headless:java
system:
	@missing=""; \
	for item in $(SYSTEM_PACKAGES); do \
		package=$${item%%:*}; command=$${item#*:}; \
		command -v $$command >/dev/null 2>&1 || missing="$$missing $$package"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null 2>&1 \
				|| echo "note: could not install$$missing; the tests that need them will be skipped"; \
		else echo "note:$$missing not installed (not root); the tests that need them will be skipped"; fi; \
	fi

# pytest-xdist: one worker per core (at most 4), each test file on one worker so module fixtures
# (servers, trained bundles) are built once; the session fixtures are built once per worker.
PYTEST_PARALLEL = -n auto --maxprocesses 4 --dist loadfile

test: install system
	$(BIN)/python -m pytest $(PYTEST_PARALLEL)

test-all: install system
	$(BIN)/python -m pytest $(PYTEST_PARALLEL) -m ''

# Long (about 30 minutes): 10M-impression ingest and feature builds, models, the online store at 1M
# users, service latency (wrk and redis-server, installed when root); results in benchmarks/results/.
bench: install
	$(MAKE) system SYSTEM_PACKAGES="redis-server wrk"
	$(BIN)/python benchmarks/bench_simulate.py
	$(BIN)/python benchmarks/bench_ingest.py
	$(BIN)/python benchmarks/bench_features.py
	$(BIN)/python benchmarks/bench_snapshot.py
	$(BIN)/python benchmarks/bench_online_store.py
	$(BIN)/python benchmarks/bench_model.py
	$(BIN)/python benchmarks/bench_service.py

# Re-pin every dependency (runtime and dev) for Python 3.11 on Linux.
lock: | $(BIN)/uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra spark --python-version 3.11 \
		--python-platform x86_64-unknown-linux-gnu --quiet -o requirements.lock

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis .bentoml mlflow.db mlruns
