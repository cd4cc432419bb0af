#!/usr/bin/env bash
# The daily job on the embedded default: demo files land in a local folder laid out
# like the SFTP server, Airflow runs the ingest DAG and then the marts DAG (as of
# 2023-06-15, the business date of the last demo files), and mart_kpi is printed.
# Run it twice: the second run loads nothing new (every file is a duplicate).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
AS_OF=2023-06-15

echo "== warehouse and Airflow metadata (SQLite under .local/)"
python -m govbank migrate 2>&1 | grep -v "^INFO" || true
airflow db migrate > "$AIRFLOW_HOME/db-migrate.log" 2>&1 || { cat "$AIRFLOW_HOME/db-migrate.log"; exit 1; }

echo "== demo drop into $GOVBANK_LOCAL_DIR/landing"
python -m govbank_dev.demo --landing "$GOVBANK_LOCAL_DIR/landing"

echo "== airflow dags test govbank_ingest $AS_OF"
airflow dags test govbank_ingest "$AS_OF" > "$AIRFLOW_HOME/dags-test-ingest.log" 2>&1 \
  || { tail -50 "$AIRFLOW_HOME/dags-test-ingest.log"; exit 1; }
grep -E "status=|DagRun Finished|state=" "$AIRFLOW_HOME/dags-test-ingest.log" | grep -oE "bank=.*|DagRun Finished.*" || true

echo "== the government's e-licence API (the project's reference server stands in for it)"
WAREHOUSE_URL=$(python -c 'from govbank.config.settings import Settings; print(Settings.from_env().warehouse_url)')
API_PORT=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
GOVBANK_ELICENSE_CLIENT_SECRET=$(python -c 'import secrets; print(secrets.token_urlsafe(24))')
export GOVBANK_ELICENSE_CLIENT_SECRET
setsid python -m govbank_dev.elicense_server --port "$API_PORT" --demo-seed 20230615 \
  --warehouse "$WAREHOUSE_URL" --now "$AS_OF" \
  --expected-out "$GOVBANK_LOCAL_DIR/elicense_expected.json" > "$AIRFLOW_HOME/elicense-api.log" 2>&1 &
API_PID=$!
trap 'kill -TERM -- "-$API_PID" 2>/dev/null || true' EXIT
python - "$API_PORT" <<'PY' || { cat "$AIRFLOW_HOME/elicense-api.log"; exit 1; }
import socket, sys, time
for _ in range(120):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.5).close()
        break
    except OSError:
        time.sleep(0.5)
else:
    sys.exit("the reference e-licence API did not start")
PY
export AIRFLOW_CONN_GOVBANK_ELICENSE_API="http://govbank:${GOVBANK_ELICENSE_CLIENT_SECRET}@127.0.0.1:${API_PORT}"

echo "== airflow dags test govbank_elicense $AS_OF"
airflow dags test govbank_elicense "$AS_OF" > "$AIRFLOW_HOME/dags-test-elicense.log" 2>&1 \
  || { tail -50 "$AIRFLOW_HOME/dags-test-elicense.log"; exit 1; }
kill -TERM -- "-$API_PID" 2>/dev/null || true

echo "== airflow dags test govbank_marts $AS_OF"
airflow dags test govbank_marts "$AS_OF" > "$AIRFLOW_HOME/dags-test-marts.log" 2>&1 \
  || { tail -50 "$AIRFLOW_HOME/dags-test-marts.log"; exit 1; }

echo "== receipts in the outboxes"
for d in "$GOVBANK_LOCAL_DIR"/landing/*/outbox; do
  echo "  $(basename "$(dirname "$d")"): $(ls "$d" | grep -c receipt.json) receipts, $(ls "$d" | grep -c rejects.csv) rejects files"
done
echo
python -m govbank kpi
python -m govbank reconciliation --expected "$GOVBANK_LOCAL_DIR/elicense_expected.json"
