# Set-up and checks. `make run` and `make test` each build the environment first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# MLServer's own environment: a peer in `make test` (tests/e2e/test_mlserver_server_stats.py)
# and in `make bench-mlserver`.
MLSERVER_VENV := .venv-mlserver

.PHONY: run test bench bench-gui bench-gui-load bench-plots bench-serve bench-serve-ops bench-mlserver bench-requests bench-load screenshots xvfb prometheus models clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch goes in first and pinned, so pip takes the CPU build instead of pulling CUDA wheels.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/inferdeck

test: $(STAMP) prometheus $(MLSERVER_VENV)/bin/mlserver
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	QT_QPA_PLATFORM=offscreen $(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/bench_predict.py

# The desktop app's figures: start-up, UI loop lag and throughput during a 100,000-row drop.
bench-gui: $(STAMP) xvfb
	$(BIN)/python bench/bench_gui.py

# The app sending 1,000 req/s from `inferdeck gui --autostart` with the Monitor live: UI loop lag.
bench-gui-load: $(STAMP) xvfb
	$(BIN)/python bench/bench_gui_load.py

bench-plots: $(STAMP) xvfb
	$(BIN)/python bench/bench_plots.py

# `inferdeck serve` against a bare FastAPI endpoint, with wrk (a Debian package) as the load.
bench-serve: $(STAMP)
	@command -v wrk >/dev/null || (apt-get update -q && apt-get install -y -q wrk)
	$(BIN)/python bench/bench_serve.py

# MLServer in its own environment (its pins clash with ours); torch first and pinned, as above.
# uvloop<0.22: with 0.22+ MLServer 1.7.1's inference workers die at start (SeldonIO/MLServer#2286).
$(MLSERVER_VENV)/bin/mlserver:
	$(PYTHON) -m venv $(MLSERVER_VENV)
	$(MLSERVER_VENV)/bin/pip install --quiet --upgrade pip
	$(MLSERVER_VENV)/bin/pip install --quiet torch==2.13.0
	$(MLSERVER_VENV)/bin/pip install --quiet mlserver==1.7.1 "uvloop<0.22"

# `inferdeck serve` against MLServer serving the same iris model.pt2 (bench/mlserver_runtime), wrk.
bench-mlserver: $(STAMP) $(MLSERVER_VENV)/bin/mlserver
	@command -v wrk >/dev/null || (apt-get update -q && apt-get install -y -q wrk)
	$(BIN)/python bench/bench_mlserver.py

# What production costs: metrics and tracing against neither, PSS of 1 and 4 workers, RSS.
bench-serve-ops: $(STAMP)
	@command -v wrk >/dev/null || (apt-get update -q && apt-get install -y -q wrk)
	$(BIN)/python bench/bench_serve_ops.py

bench-requests: $(STAMP)
	$(BIN)/python bench/bench_requests.py

# `inferdeck load` against nginx (a Debian package) beside Locust (the bench extra), wrk if present.
bench-load: $(STAMP)
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || \
		(apt-get update -q && apt-get install -y -q nginx)
	@test -x $(BIN)/locust || $(BIN)/pip install --quiet -e ".[dev,bench]"
	$(BIN)/python bench/bench_load.py

# Screenshots of every view from the real app in a real (virtual) X display.
screenshots: $(STAMP) xvfb
	xvfb-run -a -s "-screen 0 1440x900x24" $(BIN)/python assets/take_screenshots.py assets/screenshots

# Prometheus (a Debian package) for tests/e2e/test_prometheus_scrape.py, which starts its own.
prometheus:
	@test -x /usr/bin/prometheus || \
		(apt-get update -q && apt-get install -y -q --no-install-recommends prometheus)

# Xvfb and the X libraries Qt's xcb platform loads (Debian packages; see shared/PLATFORM.md).
XVFB_PACKAGES := xvfb libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 \
	libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1 libxkbcommon-x11-0 \
	libxcb-cursor0
xvfb:
	@command -v xvfb-run >/dev/null || (apt-get update -q && apt-get install -y -q $(XVFB_PACKAGES))

# Retrain the built-in models (needs scikit-learn for the bundled Iris and digits data).
models: $(STAMP)
	$(BIN)/pip install --quiet -e ".[dev,train]"
	$(BIN)/python assets/train_models.py

clean:
	rm -rf $(VENV) $(MLSERVER_VENV) .mypy_cache .pytest_cache .ruff_cache
