# Age and gender from faces. `make help` lists the targets; `make report` and `make test` are all
# a fresh machine needs (Python 3.11+): both create .venv and install what is missing first.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PROFILE ?= auto
# WEIGHTS=null runs the transfer models without ImageNet weights (offline); a path uses that file
WEIGHTS ?=
# peer: the off-the-shelf estimator the comparison chapter tests; predict: the face detector of
# `agegender predict` and `evaluate` (the same packages); bench: JAX, a second backend
# for `agegender bench` (both optional: EXTRAS=dev)
EXTRAS ?= dev,peer,predict,bench
export TF_CPP_MIN_LOG_LEVEL ?= 2

.DEFAULT_GOAL := help
.PHONY: help setup report studies book test bench clean

## List the targets
help:
	@awk '/^## /{doc=substr($$0, 4)} /^[a-z]+:/{if (doc) printf "  make %-8s %s\n", substr($$1, 1, length($$1) - 1), doc; doc=""}' $(MAKEFILE_LIST)

$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "error: Python 3.11 or newer is needed; run with PYTHON=/path/to/python3.11" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --editable '.[$(EXTRAS)]'
	@touch $@

## Create .venv and install the package with its tools (quick when already done)
setup: $(INSTALLED)

## Get and check the data, run the chapters (PROFILE=smoke|cpu|gpu, default auto; WEIGHTS=null offline), build the book
report: setup
	$(BIN)/agegender data prepare
	$(BIN)/agegender run $(PROFILE) $(if $(WEIGHTS),-p weights=$(WEIGHTS))
	$(BIN)/agegender build

## Run the profile's studies (recipe selection, seeds, data size) into results/ (PROFILE as above)
studies: setup
	$(BIN)/agegender data prepare
	$(BIN)/agegender study $(PROFILE)

## Build the book from the committed chapters only (fast, offline, no data needed)
book: setup
	$(BIN)/agegender build

## Lint, check formatting and run the tests (the real-data test needs UTKFACE_SOURCE)
test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

## Measure speed and memory (about 40 min on 2 CPU cores) into results/bench/ for the appendix
bench: setup
	$(BIN)/agegender bench

## Delete derived files (image caches, build outputs); raw images and the split stay
clean:
	rm -rf data/cache _build .pytest_cache .ruff_cache
