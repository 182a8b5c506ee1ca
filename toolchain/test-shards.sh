#!/usr/bin/env bash
# `make test` with no PYTEST_ARGS: the whole suite as two pytest processes side by side.
#
# The suite waits more than it computes: the off-chain half mostly waits on blocks,
# workers and polls (about one core busy), while the contract half is four CPU-bound
# state machines of 1,000 examples each. Run one after the other they took 21.5 min
# on 2 cores; side by side they share the cores instead of leaving one idle.
# Each process is its own brownie session with its own anvil on a free port
# (tests/support/brownie_network.py); contracts are compiled once before (make
# compile), so neither session writes build/. Exit status: non-zero if either fails.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
mkdir -p reports
log=reports/test-contracts.log

PYTHONUNBUFFERED=1 "$PY" -m pytest tests/contracts "$@" >"$log" 2>&1 &
contracts=$!
trap 'kill "$contracts" 2>/dev/null' INT TERM

# brownie rewrites parts of build/ while it loads a project, even a compiled one: a
# second session loading at the same moment read a half-written build/ and failed
# ("Unable to load project"). Start the second once the first has loaded, which it
# has when it launches its anvil (at the end of collection).
for _ in $(seq 1 600); do
  grep -q "Launching 'anvil" "$log" 2>/dev/null && break
  kill -0 "$contracts" 2>/dev/null || break
  sleep 0.5
done

echo "== tests/contracts runs alongside (log: $log)"
"$PY" -m pytest tests --ignore=tests/contracts "$@"
rest=$?

wait "$contracts"
status=$?
echo
echo "== tests/contracts (run alongside): exit $status; its log:"
cat "$log"
[ "$rest" -eq 0 ] && [ "$status" -eq 0 ]
