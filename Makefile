# modclust: one entry point for set-up, tests, the seed reproduction, benchmarks and the paper.
#   make paper                 set up, run the whole paper pipeline on MNIST, compile the PDF and the HTML report
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

.PHONY: help setup data test test-lib smoke-paper browser-tools pdf-tools reproduce bench clean
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
# which a library test reads; then the smoke paper is compiled from them, whose text
# tests/test_paper_text.py reads back (pdftotext).
test: nbval smoke-paper test-lib

smoke-paper: | $(VENV)/.installed
	$(MAKE) --no-print-directory paper PRESET=smoke

test-lib: setup browser-tools pdf-tools
	$(PY) -m pytest -q tests

# System tools installed with apt when missing and we may (root, apt-get present); otherwise one
# error that says what to install. apt's own output goes to build/apt.log (shown if it fails).
# apt_tools(what, test command, packages, why)
, := ,
define apt_tools
	@$(2) && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "==> installing $(1): apt-get install $(3) (log: build/apt.log)"; mkdir -p build; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(3); } \
	        >build/apt.log 2>&1 || { tail -20 build/apt.log >&2; echo "error: apt-get install $(3) failed" >&2; exit 1; }; \
	else \
	    echo "error: $(4). Install with, e.g." >&2; \
	    echo "  sudo apt-get install --no-install-recommends $(3)" >&2; \
	    exit 1; \
	fi
endef

# Chromium (headless) renders the HTML report in tests/test_report.py.
BROWSER_PACKAGES := chromium
browser-tools:
	$(call apt_tools,Chromium,command -v chromium >/dev/null || command -v chromium-browser >/dev/null,$(BROWSER_PACKAGES),chromium (or chromium-browser) is needed to test the HTML report in a real browser)

# pdftotext (poppler-utils) reads the compiled paper's text in tests/test_paper_text.py.
PDF_PACKAGES := poppler-utils
pdf-tools:
	$(call apt_tools,poppler-utils,command -v pdftotext >/dev/null,$(PDF_PACKAGES),pdftotext (poppler-utils) is needed to test the compiled paper's text)

reproduce: setup
	$(PY) -m modclust.seed.reproduce --seeds 3

bench: setup
	$(PY) benchmarks/bench.py

clean:
	rm -rf build

-include pipeline.mk
