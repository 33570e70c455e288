# Two commands do all the set-up on a fresh machine:
#   make demo   -- create .venv, install semloc, run the offline end-to-end demo
#   make test   -- create .venv, install semloc with test tools, run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU-only pins (see constraints.txt); set CONSTRAINTS= to install whatever torch your platform wants.
CONSTRAINTS ?= constraints.txt
PIP_C := $(if $(CONSTRAINTS),-c $(CONSTRAINTS),)
PYTEST_ARGS ?=

.PHONY: install install-dev demo noise-study test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml $(CONSTRAINTS)
	$(BIN)/pip install -q $(PIP_C) -e ".[serve,ray]"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install -q $(PIP_C) -e ".[serve,ray,dev,tracking,export]"
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/semloc demo

# the README's robustness plots (after `make demo`, whose CLIP every world is extracted with)
noise-study: install
	SEMLOC=$(BIN)/semloc sh scripts/noise-study.sh

test: install-dev
	sh scripts/install-browser.sh
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

bench: install
	for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build dist src/*.egg-info
