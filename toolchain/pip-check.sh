#!/usr/bin/env bash
# `pip check`, accepting exactly one known conflict: eth-brownie 1.22.2 pins
# python-dotenv==0.16.0 (its lockfile pins everything exactly), while
# pydantic-settings needs python-dotenv>=1.2.2. brownie only calls
# dotenv_values/load_dotenv, whose API 1.x keeps; tests/ run brownie against it.
set -euo pipefail
python=${1:-.venv/bin/python}
allowed='eth-brownie 1.22.2 has requirement python-dotenv==0.16.0, but you have python-dotenv 1.2.2.'
problems=$("$python" -m pip check 2>&1 | grep -vxF "$allowed" | grep -v '^No broken requirements found.$' || true)
if [ -n "$problems" ]; then
  echo "pip check found unexpected dependency conflicts:" >&2
  echo "$problems" >&2
  exit 1
fi
