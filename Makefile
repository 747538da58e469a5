# Prune Workbench: developer entry points. Non-interactive (safe with CI=true, no stdin).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
PORT ?= 8501
VENV := .venv
VPY := $(VENV)/bin/python
PIP := $(VPY) -m pip --disable-pip-version-check --no-input
# Every install is held to the known-good versions in constraints.txt (CI gets what passed).
CONSTRAINTS := constraints.txt
# Stamps make reinstalls happen only when a requirements file or the constraints change.
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: help venv deps dev-deps run serve test lint bench train-demos clean

help:
	@echo "Targets: venv deps dev-deps run [PORT=8501] serve [ADDRESS=0.0.0.0] test lint bench train-demos clean"

$(VPY):
	$(PYTHON) -m venv $(VENV)

venv: $(VPY)

# Order-only on the interpreter: the venv dir mtime changes on every install.
$(RUNTIME_STAMP): requirements.txt $(CONSTRAINTS) | $(VPY)
	$(PIP) install -r requirements.txt -c $(CONSTRAINTS)
	touch $@

$(DEV_STAMP): requirements-dev.txt requirements-export.txt requirements-scale.txt requirements.txt $(CONSTRAINTS) $(RUNTIME_STAMP)
	$(PIP) install -r requirements-dev.txt -c $(CONSTRAINTS)
	touch $@

deps: $(RUNTIME_STAMP)

dev-deps: $(DEV_STAMP)

# Your own machine: served on localhost only. Local paths, architecture files and trusted
# pickles stay off unless you start it with WORKBENCH_LOCAL_CODE=1 (see the README).
run: deps
	$(VENV)/bin/streamlit run app.py --server.address localhost --server.port $(PORT) \
		--server.headless true

# A shared server: listens on ADDRESS, and the local-code features are forced off whatever
# the environment says.
ADDRESS ?= 0.0.0.0
serve: deps
	WORKBENCH_LOCAL_CODE=0 $(VENV)/bin/streamlit run app.py --server.address $(ADDRESS) \
		--server.port $(PORT) --server.headless true

test: dev-deps
	bash scripts/ensure_chromium.sh
	$(VENV)/bin/ruff check .
	$(VPY) -m pytest

lint: dev-deps
	$(VENV)/bin/ruff check .

bench: dev-deps
	@shopt -s nullglob; files=(benchmarks/*.py); \
	if [ $${#files[@]} -eq 0 ]; then echo "no benchmarks/*.py found"; exit 0; fi; \
	for f in "$${files[@]}"; do echo "== $$f"; $(VPY) "$$f"; done

train-demos: dev-deps
	$(VPY) scripts/train_demos.py

clean:
	rm -rf .pytest_cache .ruff_cache test-artifacts build dist *.egg-info
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
