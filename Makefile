# modclust: one entry point for set-up, tests, the seed reproduction, benchmarks and the paper.
#   make paper                 set up, run the paper pipeline (preset "paper"), compile the PDF
#   make test                  set up, run the library tests and the notebook checks
#   make reproduce             the seed experiment over 3 seeds, with the DESIGN table
#   make bench                 the seed's way against modclust's, side by side
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
# The torch build known to work on these machines (x86_64, Python 3.11); override elsewhere,
# e.g. make setup TORCH_SPEC="torch torchvision".
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

# Data: the root, and a mirror of the .gz files to copy from when offline (../shared/data on
# the project's machines, when it exists). Both are read by the library too.
export MODCLUST_DATA ?= $(CURDIR)/data
export MODCLUST_DATA_MIRROR ?= $(if $(wildcard ../shared/data/MNIST/raw),$(abspath ../shared/data))
export PYTHONUNBUFFERED := 1

.PHONY: help setup data test test-lib reproduce bench clean
help:
	@sed -n '2,6p' Makefile

$(VENV)/.installed: pyproject.toml
	@echo "==> setting up $(VENV) (torch: $(TORCH_SPEC))"
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

setup: $(VENV)/.installed

data: setup
	$(PY) -c "import modclust.core.data as d; [d.load(n) for n in d.DATASETS]; print('data ready in', d.paths.data_root())"

# The notebook checks (nbval, in pipeline.mk) run first: they build the smoke preset's results,
# which a library test reads.
test: nbval test-lib

test-lib: setup
	$(PY) -m pytest -q tests

reproduce: setup
	$(PY) -m modclust.seed.reproduce --seeds 3

bench: setup
	$(PY) benchmarks/bench.py

clean:
	rm -rf build

-include pipeline.mk
