PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-js lint bench clean

$(STAMP): pyproject.toml package-lock.json
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	npm ci --no-audit --no-fund
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/orderflow serve

# The dashboard's logic (static/js) has node unit tests in tests/js (no npm packages needed).
# Files are named, not the folder, so every node from 18 on finds the same ones.
JS_TESTS = tests/js/*.test.js

test: $(STAMP)
	$(BIN)/ruff check scheduler dashboard tests benchmarks
	$(BIN)/lint-imports --no-cache
	node --test --test-reporter=dot $(JS_TESTS)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/peer_dask.py
	$(BIN)/python benchmarks/http_ingest.py
	$(BIN)/python benchmarks/fanout.py
	$(BIN)/python benchmarks/memory.py
	$(BIN)/python benchmarks/dos.py
	@if [ -f benchmarks/failover.py ]; then $(BIN)/python benchmarks/failover.py; fi

test-js:
	node --test --test-reporter=dot $(JS_TESTS)

lint: $(STAMP)
	$(BIN)/ruff check scheduler dashboard tests benchmarks
	$(BIN)/lint-imports --no-cache

clean:
	rm -rf $(VENV) build *.egg-info node_modules
