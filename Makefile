# ranklab: `make run` (set-up + main job), `make test` (set-up + tests).
# Both create or reuse a local virtual environment in $(VENV) and install into it.
# TORCH_SPEC picks the torch build: plain `torch` by default; CI sets torch==2.13.0 (CPU build).
PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch
PYTEST_ARGS ?=
BIN        := $(VENV)/bin
STAMP      := $(VENV)/.ranklab-installed

.PHONY: setup run demo test test-slow clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	-$(BIN)/nbstripout --install --attributes .gitattributes 2>/dev/null
	touch $(STAMP)

run: demo

demo: setup
	$(BIN)/ranklab demo

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-slow: setup
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
