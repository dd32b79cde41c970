# ranklab: `make reproduce` (set-up + main job), `make test` (set-up + tests).
# Both create or reuse a local virtual environment in $(VENV) and install into it.
# TORCH_SPEC picks the torch build: plain `torch` by default; CI sets torch==2.13.0 (CPU build).
PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch
PYTEST_ARGS ?=
BIN        := $(VENV)/bin
STAMP      := $(VENV)/.ranklab-installed

SCALE      ?= embedded

.PHONY: setup run reproduce figures demo bench test test-slow test-dist clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	-$(BIN)/nbstripout --install --attributes .gitattributes 2>/dev/null
	touch $(STAMP)

run: reproduce

# Train every recipe at $(SCALE) (finished runs are skipped), then write figures/ and RESULTS.md.
reproduce: setup
	$(BIN)/ranklab reproduce --scale $(SCALE)

# Redraw figures/ from results/ (or from the committed figures/results_summary.json).
figures: setup
	$(BIN)/ranklab figures --scale $(SCALE)

demo: setup
	$(BIN)/ranklab demo

bench: setup
	$(BIN)/python benchmarks/bench.py --out benchmarks/results.md

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-slow: setup
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

# Two CPU processes through torch.distributed (gloo): multi-process training checks (about 2 minutes).
test-dist: setup
	$(BIN)/python -m pytest -m distributed $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
