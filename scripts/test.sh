#!/usr/bin/env bash
# The whole test suite, integration tests included: nothing is skipped. It needs the
# system packages and services of scripts/system-deps.sh (run it as root first, or let
# this script run it when it is root).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
if [ "$(id -u)" = 0 ]; then
  scripts/system-deps.sh
fi
export PATH="$ROOT/.venv/bin:$PATH"
unset PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX="$ROOT/.local/pycache"
# a PostgreSQL database of our own for the PostgreSQL path
PGUSER_ADMIN="${GOVBANK_TEST_PG_SUPERUSER:-postgres}"
psql -h 127.0.0.1 -U "$PGUSER_ADMIN" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='govbank_test'" | grep -q 1 \
  || psql -h 127.0.0.1 -U "$PGUSER_ADMIN" -d postgres -qc "CREATE DATABASE govbank_test"
export GOVBANK_TEST_POSTGRES_URL="${GOVBANK_TEST_POSTGRES_URL:-postgresql://$PGUSER_ADMIN@127.0.0.1:5432/govbank_test}"
export GOVBANK_NO_SKIP=1
export GOVBANK_TEST_DIR="$ROOT/.local/test"
rm -rf "$GOVBANK_TEST_DIR"
ruff check .
exec python -m pytest -q -ra -p no:cacheprovider --timeout 1200 "$@"
