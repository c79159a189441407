# Two commands do all set-up: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is installed first and on its own: a plain `torch` requirement may resolve a multi-GB CUDA
# build. Override for your machine, e.g. `make test TORCH_SPEC=torch` (kdlab itself needs torch>=2.2).
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test test-fast lint clean venv serve lab mutants

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(BIN)/python -m pip install -q -e ".[dev,ray,text,diffusion,sweep,tracking]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(BIN)/kdlab demo

# Two pytest workers (pytest-xdist; a test file stays on one worker, so its module fixtures are built once): most
# tests use one CPU thread, so two share the 2 cores (the suite: ~11 minutes instead of ~17). PYTEST_WORKERS=0 runs
# it in one process.
PYTEST_WORKERS ?= 2
XDIST := $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile)

test: venv
	$(BIN)/python -m pytest -q $(XDIST) $(PYTEST_ARGS)

# The quick subset (PYTEST_ARGS=tests/<folder> for one folder): every test not marked
# `slow` (so no browser, notebook, Ray, DDP, demo or kill-and-resume tests). CI runs `make test`.
test-fast: venv
	$(BIN)/python -m pytest -q $(XDIST) -m "not slow" $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check kdlab tests dashboards bench

# Mutation testing of the science core (bench/mutants.py; the map of files to tests is bench/mutants.toml): every
# mapped file, about 17 minutes on 2 cores; not part of `make test`. One file: `make mutants FILE=kdlab/transfer/
# metrics.py` (globs and several files too). Results in bench/out/mutants/ (summary.md, survivors.diff).
FILE ?=
MUTANTS_ARGS ?=
mutants: venv
	$(BIN)/python -c "import tomllib" 2>/dev/null || $(BIN)/python -m pip install -q -e ".[mutants]"
	$(BIN)/python bench/mutants.py --jobs 2 $(MUTANTS_ARGS) $(FILE)

# The Panel dashboard on http://127.0.0.1:$(PORT)/ (localhost only; `panel serve dashboards/app.py` also works).
PORT ?= 5006
serve: venv
	$(BIN)/kdlab serve --port $(PORT)

# JupyterLab on notebooks/, localhost only (installs the `lab` extra when missing; LAB_ARGS pass through).
lab: venv
	$(BIN)/python -c "import jupyterlab" 2>/dev/null || $(BIN)/python -m pip install -q -e ".[lab]"
	$(BIN)/jupyter lab notebooks/ --ServerApp.ip=127.0.0.1 $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
