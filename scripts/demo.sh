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
python -m govbank.demo --landing "$GOVBANK_LOCAL_DIR/landing"

echo "== airflow dags test govbank_ingest $AS_OF"
airflow dags test govbank_ingest "$AS_OF" > "$AIRFLOW_HOME/dags-test-ingest.log" 2>&1 \
  || { tail -50 "$AIRFLOW_HOME/dags-test-ingest.log"; exit 1; }
grep -E "status=|DagRun Finished|state=" "$AIRFLOW_HOME/dags-test-ingest.log" | grep -oE "bank=.*|DagRun Finished.*" || true

echo "== airflow dags test govbank_marts $AS_OF"
airflow dags test govbank_marts "$AS_OF" > "$AIRFLOW_HOME/dags-test-marts.log" 2>&1 \
  || { tail -50 "$AIRFLOW_HOME/dags-test-marts.log"; exit 1; }

echo "== receipts in the outboxes"
for d in "$GOVBANK_LOCAL_DIR"/landing/*/outbox; do
  echo "  $(basename "$(dirname "$d")"): $(ls "$d" | grep -c receipt.json) receipts, $(ls "$d" | grep -c rejects.csv) rejects files"
done
echo
python -m govbank kpi
