#!/usr/bin/env bash
# Installs everything gpucap needs into the checkout, from PyPI and npm only:
#   .venv/            Python 3.11 virtualenv with the pinned requirements.lock
#   node_modules/     solcjs, anvil, Hardhat's node, OpenZeppelin Contracts (package-lock.json)
#   .toolchain/solcx/ a native-looking `solc-v<version>` for brownie/py-solc-x
#   .toolchain/schemathesis-venv/  the OpenAPI fuzzer the API tests run
#   /usr/bin/chromium  Debian's Chromium for the dashboard's browser tests (apt, as root)
# Idempotent: each step is skipped while its inputs are unchanged (stamp files).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3.11}
STAMPS=.toolchain/stamps
mkdir -p "$STAMPS" .toolchain/solcx
# Package caches stay in the checkout too (nothing written under ~ but brownie's).
export PIP_CACHE_DIR=$ROOT/.toolchain/cache/pip
export npm_config_cache=$ROOT/.toolchain/cache/npm
export PIP_DISABLE_PIP_VERSION_CHECK=1

fingerprint() { cat "$@" | sha256sum | cut -d' ' -f1; }
fresh() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }

# --- Python ---------------------------------------------------------------
py_fp=$(fingerprint requirements.lock pyproject.toml)
if ! fresh python "$py_fp" || [ ! -x .venv/bin/python ]; then
  echo "==> Python virtualenv (.venv) from requirements.lock"
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  # ONE resolver-free install of the fully pinned set: eth-brownie pins exact
  # versions and a resolving install would move them (see requirements.lock).
  # Output goes to a log: this machine's pip.conf names absent find-links
  # folders and pip warns about each one.
  if ! .venv/bin/python -m pip install --quiet --no-deps -r requirements.lock \
      > .toolchain/pip-install.log 2>&1; then
    grep -v "^WARNING: Location" .toolchain/pip-install.log >&2
    exit 1
  fi
  toolchain/pip-check.sh .venv/bin/python
  echo "$py_fp" > "$STAMPS/python"
fi

# --- schemathesis (a tool venv: its hypothesis cannot live beside brownie's) --
st_fp=$(fingerprint toolchain/schemathesis.lock)
ST_VENV=.toolchain/schemathesis-venv
if ! fresh schemathesis "$st_fp" || [ ! -x "$ST_VENV/bin/schemathesis" ]; then
  echo "==> schemathesis ($ST_VENV) from toolchain/schemathesis.lock"
  [ -x "$ST_VENV/bin/python" ] || "$PYTHON" -m venv "$ST_VENV"
  if ! "$ST_VENV/bin/python" -m pip install --quiet --no-deps -r toolchain/schemathesis.lock \
      > .toolchain/schemathesis-install.log 2>&1; then
    grep -v "^WARNING: Location" .toolchain/schemathesis-install.log >&2
    exit 1
  fi
  echo "$st_fp" > "$STAMPS/schemathesis"
fi

# --- npm ------------------------------------------------------------------
npm_fp=$(fingerprint package-lock.json)
if ! fresh npm "$npm_fp" || [ ! -x node_modules/.bin/anvil ]; then
  echo "==> npm toolchain (node_modules) from package-lock.json"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$npm_fp" > "$STAMPS/npm"
fi

# --- Chromium for tests/dashboard (Debian's; Playwright never downloads one) --
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> chromium (Debian) for the dashboard's browser tests"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends chromium > .toolchain/chromium-install.log 2>&1; then
      apt-get update >> .toolchain/chromium-install.log 2>&1
      apt-get install -y --no-install-recommends chromium >> .toolchain/chromium-install.log 2>&1 \
        || { tail -20 .toolchain/chromium-install.log >&2; exit 1; }
    fi
  else
    echo "note: /usr/bin/chromium is missing and apt-get needs root: install Debian's" \
      "chromium for tests/dashboard (or set GPUCAP_CHROMIUM)" >&2
  fi
fi

# --- solc for brownie -----------------------------------------------------
SOLC_VERSION=$(node -p "require('solc/package.json').version")
SOLC_FULL=$(node -p "require('solc').version()")
SOLC_BIN=.toolchain/solcx/solc-v$SOLC_VERSION
solc_fp=$(printf '%s %s' "$SOLC_FULL" "$ROOT" | sha256sum | cut -d' ' -f1)$(fingerprint toolchain/solcjs-standard-json.js)
if ! fresh solc "$solc_fp" || [ ! -x "$SOLC_BIN" ]; then
  echo "==> solc $SOLC_VERSION (solcjs) for brownie at $SOLC_BIN"
  # brownie asks for --version ~20 times per compile: answer it without node.
  cat > "$SOLC_BIN" <<SH
#!/bin/sh
if [ "\$1" = "--version" ]; then
  printf 'solc, the solidity compiler commandline interface\nVersion: %s\n' '$SOLC_FULL'
  exit 0
fi
exec node '$ROOT/toolchain/solcjs-standard-json.js' "\$@"
SH
  chmod +x "$SOLC_BIN"
  echo "$solc_fp" > "$STAMPS/solc"
fi
