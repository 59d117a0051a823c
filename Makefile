# fastmlp: `make train` and `make test` are all a newcomer needs to type.
# Both build .venv and install the package into it when it is missing or when
# pyproject.toml changed since the last install (the stamp file is keyed on its hash).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
KEY    := $(shell $(PYTHON) -c "import hashlib;print(hashlib.sha1(open('pyproject.toml','rb').read()).hexdigest()[:12])")
STAMP  := $(VENV)/.installed-$(KEY)

# Every extra but the benchmarks' (make bench adds those): the tests of each must run, not skip.
EXTRAS := dev,search,images,sklearn,onnx,postgres,dashboard

TRAIN_ARGS  ?=
SEARCH_ARGS ?= --timeout 600 --jobs 2
REPORT_ARGS ?=

.PHONY: help install train test bench data gradcheck search report clean

help:
	@echo "make train      train the default model on MNIST (writes runs/default/)"
	@echo "make test       run the test suite"
	@echo "make bench      run the benchmarks and the comparisons; write benchmarks/results.md"
	@echo "make data       fetch MNIST into ./data when it is not already found"
	@echo "make gradcheck  finite-difference check of the reference gradients"
	@echo "make search     hyperparameter search, about 10 minutes (runs/search.db)"
	@echo "make report     report of the search (report/)"
	@echo "make clean      remove .venv, caches and build files (runs/ and data/ are kept)"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

train: $(STAMP)
	$(BIN)/fastmlp train --out runs/default $(TRAIN_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -n auto tests

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m pytest benchmarks/suites --benchmark-only --benchmark-columns=min,median,max,rounds
	$(BIN)/python benchmarks/results.py run

data: $(STAMP)
	$(BIN)/fastmlp data download mnist

gradcheck: $(STAMP)
	$(BIN)/fastmlp gradcheck

search: $(STAMP)
	$(BIN)/fastmlp search $(SEARCH_ARGS)

report: $(STAMP)
	$(BIN)/fastmlp report --out report $(REPORT_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .benchmarks
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
