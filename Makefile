PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml package-lock.json
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	npm ci --no-audit --no-fund
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/orderflow serve

test: $(STAMP)
	$(BIN)/ruff check scheduler dashboard tests benchmarks
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/peer_dask.py
	$(BIN)/python benchmarks/http_ingest.py
	$(BIN)/python benchmarks/fanout.py
	$(BIN)/python benchmarks/memory.py
	@if [ -f benchmarks/failover.py ]; then $(BIN)/python benchmarks/failover.py; fi

lint: $(STAMP)
	$(BIN)/ruff check scheduler dashboard tests benchmarks
	$(BIN)/lint-imports --no-cache

clean:
	rm -rf $(VENV) build *.egg-info node_modules
