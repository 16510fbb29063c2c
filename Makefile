# The two commands: `make run` (the whole pipeline on the demo data) and `make test`.
# Both set themselves up first: a .venv with the pinned dependencies, and the Debian
# libraries PyVista needs to render offscreen.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DVC_NO_ANALYTICS := 1
export BENTOML_DO_NOT_TRACK := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export VTK_DEFAULT_OPENGL_WINDOW := vtkOSOpenGLRenderWindow
export MESA_SHADER_CACHE_DISABLE := true

.PHONY: setup run test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock scripts/install_system_deps.sh
	bash scripts/install_system_deps.sh
	command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

run: setup
	$(BIN)/dh run

test: setup
	$(BIN)/python -m pytest -m "not gpu" --timeout=900 --durations=15

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: setup
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .cache artifacts reports outputs data/raw data/quarantine
