# gpucap — the two commands that matter: `make demo` and `make test`.
# Both install everything first (idempotent; fast the second time).

SHELL := /bin/bash
export PATH := $(CURDIR)/node_modules/.bin:$(CURDIR)/.venv/bin:$(PATH)
export SOLCX_BINARY_PATH := $(CURDIR)/.toolchain/solcx
PY := .venv/bin/python

.PHONY: setup compile test test-slow demo lint slither bench bench-gas clean help

help:
	@echo "make demo   - bring up a local gpucap world (1,000 nodes, 3 oracles, API, users acting)"
	@echo "make test   - run the whole test suite"
	@echo "make setup  - install the toolchain only (.venv, node_modules, solc for brownie)"
	@echo "make bench  - measure gas, throughput, API latency and oracle time (bench/results.json)"

setup:
	@bash toolchain/bootstrap.sh

compile: setup
	@brownie compile >/dev/null && echo "contracts compiled (build/contracts)"

# Two pytest-xdist workers, whole test files each (brownie's scheduler), each with its
# own anvil: the suite's chain-bound tests use one core each. Contracts are compiled
# first so workers only load the build (two workers compiling at once race on it). The
# longest files are handed out first (tests/support/schedule.py), in that order.
TEST_WORKERS ?= 2

test: compile
	$(PY) -m pytest -n $(TEST_WORKERS) --no-loadscope-reorder $(PYTEST_ARGS)

# More fuzz examples than CI runs; run it before a release, not on every push.
test-slow: compile
	GPUCAP_TEST_PROFILE=slow $(PY) -m pytest -n $(TEST_WORKERS) --no-loadscope-reorder $(PYTEST_ARGS)

demo: setup
	$(PY) -m devnet $(DEMO_ARGS)

# Type-checked packages (config in pyproject.toml [tool.mypy]); the backend is next
# (137 errors on 2026-12-08, most of them web3's stricter argument types).
MYPY_PACKAGES ?= gpucap oracle agent

lint: setup
	$(PY) -m ruff check . && $(PY) -m ruff format --check .
	$(PY) -m mypy $(MYPY_PACKAGES)

# Static analysis; fails on any medium or high finding not triaged in
# contracts/SLITHER_TRIAGE.md (accepted ones carry a slither-disable comment).
slither: setup
	slither contracts/ --config-file slither.config.json --fail-medium

# Every benchmark figure in one run on this machine: a table + bench/results.json
# (BENCH_ARGS=--smoke for a tiny run that only proves the harness works).
bench: compile
	$(PY) -m bench $(BENCH_ARGS)

# Exact gas per contract function from the contract tests (bench/gas.json).
bench-gas: setup
	$(PY) bench/gas_report.py

clean:
	rm -rf build reports .run deployments/*.json
