# selfmae: `make reproduce` regenerates every table and figure; `make test` runs the test suite.
# Both bootstrap .venv on a fresh machine (Python >= 3.10 on PATH as python3, nothing else needed).

PYTHON     ?= python3
VENV       ?= .venv
PY         := $(VENV)/bin/python
PROFILE    ?= tiny
DATA_DIR   ?=
# torch is installed first and pinned: on the project's CPU machines this release is served from a local wheel;
# set TORCH_SPEC="torch" (or a CUDA-specific spec) to choose another build.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=
STAMP      := $(VENV)/.selfmae-installed

.DEFAULT_GOAL := help
.PHONY: help install reproduce plan test test-browser lab clean clean-data clean-checkpoints

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -e 's/:.*## /\t/' | expand -t 20

$(STAMP): pyproject.toml
	@test -x $(PY) || (echo ">> creating $(VENV)" && $(PYTHON) -m venv $(VENV))
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test,browser]"
	$(PY) -m ipykernel install --sys-prefix --name selfmae --display-name "Python (selfmae)" >/dev/null
	@touch $(STAMP)
	@echo ">> environment ready in $(VENV) (Jupyter kernel: selfmae)"

install: $(STAMP)  ## create .venv, install selfmae + dependencies, register the Jupyter kernel

reproduce: $(STAMP)  ## run every numbered notebook (PROFILE=tiny|paper, DATA_DIR=/path for real data)
	$(PY) -m selfmae reproduce --profile $(PROFILE) $(if $(DATA_DIR),--data-dir $(DATA_DIR))

plan: $(STAMP)  ## print the steps of `make reproduce` (GPU-hours: PROFILE=paper); trains nothing, builds .venv to import selfmae
	$(PY) -m selfmae reproduce --profile $(PROFILE) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) --dry-run

test: $(STAMP)  ## run the test suite (includes the browser test when chromium + chromedriver are installed)
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-browser: $(STAMP)  ## only the real-browser test of the mask-ratio explorer
	$(PY) -m pytest -q -m browser tests/test_browser.py

lab: $(STAMP)  ## JupyterLab with the selfmae kernel
	$(VENV)/bin/jupyter lab notebooks/

clean:  ## remove regenerated outputs (executed notebooks, logs); keeps data and checkpoints
	rm -rf runs/*/notebooks runs/*/logs .pytest_cache
	find . -name __pycache__ -not -path "./$(VENV)/*" -prune -exec rm -rf {} +

clean-checkpoints:  ## ALSO delete training runs and checkpoints under runs/ (asks first)
	@read -p "Delete every run and checkpoint under runs/? [y/N] " ans && [ "$$ans" = y ] && rm -rf runs || echo "kept"

clean-data:  ## ALSO delete the generated synthetic phantoms under data/synthetic (asks first)
	@read -p "Delete data/synthetic? [y/N] " ans && [ "$$ans" = y ] && rm -rf data/synthetic || echo "kept"
