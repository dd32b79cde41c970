# ranklab: `make reproduce` (set-up + main job), `make test` (set-up + tests).
# Both create or reuse a local virtual environment in $(VENV) and install into it.
# TORCH_SPEC picks the torch build: plain `torch` by default; CI sets torch==2.13.0 (CPU build).
# CONSTRAINTS pins every package to the versions the tests and the committed results were made with
# (constraints.txt, written by `make lock`); `make setup CONSTRAINTS=` installs from pyproject's ranges.
PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch
PYTEST_ARGS ?=
CONSTRAINTS ?= constraints.txt
PIP_PINS   := $(if $(CONSTRAINTS),-c $(CONSTRAINTS),)
BIN        := $(VENV)/bin
STAMP      := $(VENV)/.ranklab-installed

SCALE      ?= embedded

.PHONY: setup run reproduce converged rank-sweep quick figures demo bench bench-audit test test-slow test-dist test-browser lab clean-venv lock

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip $(PIP_PINS)
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)" $(PIP_PINS)
	$(BIN)/python -m pip install --quiet -e ".[dev]" $(PIP_PINS)
	-$(BIN)/nbstripout --install --attributes .gitattributes 2>/dev/null
	$(BIN)/python -m ranklab.labsetup
	touch $(STAMP)

run: reproduce

# Train every recipe at $(SCALE) (finished runs are skipped), then write figures/ and RESULTS.md.
reproduce: setup
	$(BIN)/ranklab reproduce --scale $(SCALE)

# The converged protocol (every run to a validation plateau) in chunks: trains what fits in
# $(MINUTES) minutes, then updates figures/converged/; runs already there count as finished, so run
# it again (here or on another machine, after committing figures/converged/) to go on.
MINUTES ?= 170
converged: setup
	$(BIN)/ranklab reproduce --scale converged --recipes single_task,emd_sweep,continuation --max-minutes $(MINUTES)

# The LoRA rank sweep (does more rank help?) at the converged settings, in chunks like the protocol,
# into results/converged-sweep and figures/converged-sweep.
rank-sweep: setup
	$(BIN)/ranklab reproduce --scale converged-sweep --recipes lora_rank_sweep --max-minutes $(MINUTES)

# One seed, no learning-rate search (the committed protocol's rates): a workshop run, about 10 minutes.
quick: setup
	$(BIN)/ranklab reproduce --scale $(SCALE) --quick

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

# Every notebook in JupyterLab in chromium (Debian's: apt-get install chromium), driven by Playwright;
# screenshots in browser-artifacts/.
test-browser: setup
	$(BIN)/python -m pytest -m browser tests/browser $(PYTEST_ARGS)

# The workshop entry: set-up, then JupyterLab on notebooks/ (http://127.0.0.1:8888).
lab: setup
	$(BIN)/jupyter lab --ip 127.0.0.1 --notebook-dir notebooks

clean-venv:
	rm -rf $(VENV)

# Refresh the lock: the newest versions pyproject.toml allows, in a fresh .venv-latest, written to
# constraints.txt (torch without its local build label, so a CUDA or CPU build both match), then the
# test suite against them.  Commit constraints.txt when it is green.
LATEST := .venv-latest
lock:
	rm -rf $(LATEST)
	$(MAKE) setup VENV=$(LATEST) CONSTRAINTS=
	{ echo "# The versions the tests and the committed results were made with (make lock; Python $$($(LATEST)/bin/python -c 'import platform; print(platform.python_version())'))."; \
	  $(LATEST)/bin/python -m pip freeze --exclude-editable | sed -E 's/^(torch[a-z]*==[^+]*)\+.*/\1/'; } > constraints.txt.tmp
	mv constraints.txt.tmp constraints.txt
	$(MAKE) test VENV=$(LATEST)

bench-audit: setup
	$(BIN)/python benchmarks/audit_bench.py
