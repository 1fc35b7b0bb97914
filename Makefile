# `make dev` runs Loom on its embedded defaults; `make test` runs the tests.
# Both create .venv and install what they need on a fresh machine.
VENV   := .venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install dev test bench system-deps

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	# PyTorch first and pinned (a large build); the constraints keep every later install on it.
	$(PYTHON) -m pip install --quiet -c constraints.txt torch
	$(PYTHON) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: system-deps $(STAMP)

# Java 17 + Maven (the Apache Kafka broker) and Node.js (TimescaleDB-in-WASM for tests).
system-deps:
	@bash scripts/system-deps.sh

dev: install
	$(VENV)/bin/loom dev

test: install
	$(PYTHON) -m pytest -q -p no:cacheprovider

bench: install
	$(PYTHON) bench/landing.py
