PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-js test-fast mutation lint bench peers-table example vendor clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,postgres]'
	touch $(STAMP)

# The dashboard's two browser libraries are committed in static/vendor/ (with their licences),
# so nothing else needs npm. After changing a version in package.json: `npm install` (which
# updates package-lock.json), then this, then commit both.
vendor:
	npm ci --no-audit --no-fund
	$(PYTHON) tools/vendor.py

run: $(STAMP)
	$(BIN)/orderflow serve

# The worked example (README: "Your own workflow in five minutes"): a gateway stand-in,
# `orderflow serve --app examples.shop.app:app` and two payment workers, on loopback.
# ARGS='--port 5001 --gateway-port 8701' when the default ports are taken.
example: $(STAMP)
	$(BIN)/python -m examples.shop.run $(ARGS)

# The dashboard's logic (static/js) has node unit tests in tests/js (no npm packages needed).
# Files are named, not the folder, so every node from 18 on finds the same ones.
JS_TESTS = tests/js/*.test.js

test: $(STAMP)
	$(BIN)/ruff check scheduler dashboard tests benchmarks examples tools
	$(BIN)/lint-imports --no-cache
	node --test --test-reporter=dot $(JS_TESTS)
	$(BIN)/python -m pytest -q

# The fast set: everything but the tests marked slow (subprocesses, live servers, the browser,
# the chaos run).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# Mutation testing of the pure engine (not part of `make test`): a fresh mutmut run over the
# files in [tool.mutmut] of pyproject.toml against the fast pure tests, then the score.
mutation: $(STAMP)
	rm -rf mutants
	@start=$$(date +%s); \
	ORDERFLOW_HYPOTHESIS_PROFILE=mutation $(BIN)/mutmut run --max-children 2 || exit 1; \
	echo "mutmut took $$(( $$(date +%s) - start ))s"
	$(BIN)/python benchmarks/mutation_score.py

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,postgres,bench]'
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/core_steps.py
	$(BIN)/python benchmarks/journal_pg.py
	$(BIN)/python benchmarks/peers.py --out benchmarks/peers.jsonl
	$(BIN)/python benchmarks/peer_table.py benchmarks/peers.jsonl
	$(BIN)/python benchmarks/io_workload.py
	$(BIN)/python benchmarks/http_ingest.py
	$(BIN)/python benchmarks/fanout.py
	$(BIN)/python benchmarks/memory.py
	$(BIN)/python benchmarks/backlog.py
	$(BIN)/python benchmarks/dos.py
	$(BIN)/python benchmarks/search_load.py
	$(BIN)/python benchmarks/search_load.py --search "/api/orders?text=no%20such"
	$(BIN)/python benchmarks/failure_cost.py
	$(BIN)/python benchmarks/schedules.py
	$(BIN)/python benchmarks/heartbeat_flood.py
	$(BIN)/python benchmarks/fleet_scale.py
	@if [ -f benchmarks/failover.py ]; then $(BIN)/python benchmarks/failover.py; fi
	$(BIN)/python benchmarks/failover_ha.py
	$(BIN)/python benchmarks/dashboard_frames.py
	$(BIN)/python benchmarks/remote_workers.py --orders 2000
	$(BIN)/python benchmarks/unfinished_capacity.py

# The README's comparison table, rewritten from the last `make bench` run's peers.jsonl.
peers-table: $(STAMP)
	$(BIN)/python benchmarks/peer_table.py benchmarks/peers.jsonl --write README.md

test-js:
	node --test --test-reporter=dot $(JS_TESTS)

# `duplicates` (a code-review tool some machines have, not a package) lists code written twice;
# lint fails on any run of more than 12 lines repeated outside tests/.
lint: $(STAMP)
	$(BIN)/ruff check scheduler dashboard tests benchmarks examples tools
	$(BIN)/lint-imports --no-cache
	@if command -v duplicates >/dev/null; then \
		out=$$(duplicates --min-lines 13 --most 50 --seconds 120); echo "$$out"; \
		if echo "$$out" | grep -E '^D[0-9]+ ' | grep -vqE '^D[0-9]+ tests/[^ ]+ ~ tests/'; then \
			echo "lint: code repeated outside tests/ (13 lines or more)"; exit 1; fi; \
	else echo "duplicates is not on this machine: the repetition check is skipped"; fi

clean:
	rm -rf $(VENV) build *.egg-info node_modules mutants
