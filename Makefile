# Set-up and checks. `make run` and `make test` each build the environment first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test check lint typecheck layers pytest bench models clean

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

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	QT_QPA_PLATFORM=offscreen $(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/bench_predict.py

# Retrain the built-in models (needs scikit-learn for the bundled Iris and digits data).
models: $(STAMP)
	$(BIN)/pip install --quiet -e ".[dev,train]"
	$(BIN)/python assets/train_models.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
