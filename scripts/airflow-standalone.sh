#!/usr/bin/env bash
# Airflow for the data engineer on the embedded default: `airflow standalone` (API server
# and UI, scheduler, dag-processor, triggerer; SQLite metadata, LocalExecutor) with the
# project's settings (scripts/env.sh: DAGs, plugins, examples off, everything under
# .local/), listening on loopback only. It runs in the background in its own process
# group; scripts/airflow-stop.sh stops all of it.
#
#   scripts/airflow-standalone.sh [--port N]      (or AIRFLOW_PORT=N; default 8080)
#
# The govbank DAGs start unpaused. GOVBANK_SCHEDULES=off keeps the scheduler from
# creating time-based and asset-triggered runs (runs you trigger still run): handy to
# browse the demo, whose files are dated 2023, without new runs being added.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"

PORT="${AIRFLOW_PORT:-8080}"
if [ "${1:-}" = "--port" ] && [ -n "${2:-}" ]; then PORT="$2"; fi
HOST=127.0.0.1
PIDFILE="${AIRFLOW_PIDFILE:-$AIRFLOW_HOME/standalone.pid}"
LOG="$AIRFLOW_HOME/standalone.log"
PASSWORDS="$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"

if [ -s "$PIDFILE" ] && ps -e -o pgid= | grep -qx " *$(cat "$PIDFILE")"; then
  echo "Airflow is already running (process group $(cat "$PIDFILE")); stop it with scripts/airflow-stop.sh" >&2
  exit 1
fi

export AIRFLOW__API__HOST="$HOST"
export AIRFLOW__API__PORT="$PORT"
export AIRFLOW__API__BASE_URL="http://$HOST:$PORT"
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="${AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION:-False}"
export AIRFLOW__CORE__LAZY_LOAD_PLUGINS=False
# the LocalExecutor whose workers are forked from a warm scheduler: tasks find Great
# Expectations imported and the validator built (docs/scale-out.md, "Warm workers");
# GOVBANK_WARM_UP=off starts them cold
export AIRFLOW__CORE__EXECUTOR="${AIRFLOW__CORE__EXECUTOR:-govbank.orchestration.workers.WarmLocalExecutor}"
if [ "${GOVBANK_SCHEDULES:-on}" = "off" ]; then
  export AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE=False
fi

echo "== warehouse schema (SQLite under $GOVBANK_LOCAL_DIR unless GOVBANK_WAREHOUSE_URL is set)"
python -m govbank migrate 2>&1 | grep -v "^INFO" || true

echo "== airflow standalone on http://$HOST:$PORT (log: $LOG)"
# setsid: a process group of its own, so that the stop script reaches every child
setsid airflow standalone > "$LOG" 2>&1 < /dev/null &
PID=$!
PGID="$(ps -o pgid= -p "$PID" | tr -d ' ')"
echo "$PGID" > "$PIDFILE"

python - "$HOST" "$PORT" "$PASSWORDS" "$PID" "${AIRFLOW_START_TIMEOUT:-300}" <<'PY' || { tail -40 "$LOG"; "$ROOT/scripts/airflow-stop.sh"; exit 1; }
"""Wait until the API server is healthy, then unpause the govbank DAGs through the REST API."""
import json, os, sys, time
import requests

host, port, passwords, pid, timeout = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
base = f"http://{host}:{port}"

def alive() -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False

deadline = time.monotonic() + timeout
while True:
    if not alive():
        sys.exit("airflow standalone exited")
    try:
        if requests.get(f"{base}/api/v2/monitor/health", timeout=2).ok and os.path.exists(passwords):
            break
    except requests.RequestException:
        pass
    if time.monotonic() > deadline:
        sys.exit(f"Airflow did not become healthy in {timeout} s (AIRFLOW_START_TIMEOUT)")
    time.sleep(1)

user, password = next(iter(json.load(open(passwords)).items()))
token = requests.post(f"{base}/auth/token", json={"username": user, "password": password}, timeout=10)
token.raise_for_status()
auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
wanted = {"govbank_ingest", "govbank_marts", "govbank_elicense"}
while True:  # the dag-processor parses the DAG files a few seconds after start
    dags = requests.get(f"{base}/api/v2/dags", params={"tags": "govbank", "limit": 100}, headers=auth, timeout=10)
    dags.raise_for_status()
    found = {d["dag_id"]: d for d in dags.json()["dags"]}
    if wanted <= set(found) or time.monotonic() > deadline:
        break
    time.sleep(2)
for dag_id, dag in sorted(found.items()):
    if dag["is_paused"]:
        requests.patch(f"{base}/api/v2/dags/{dag_id}", json={"is_paused": False}, headers=auth, timeout=10).raise_for_status()
print("   DAGs unpaused: " + ", ".join(sorted(found)) if found else "   no govbank DAG parsed yet: see `airflow dags list-import-errors`")
missing = wanted - set(found)
if missing:
    print("   not parsed (yet): " + ", ".join(sorted(missing)))
PY

cat <<EOF

Airflow UI   http://$HOST:$PORT   user admin, password in
             $PASSWORDS
Data Docs    Browse → Data Docs, a task's "Data Docs" tab, or http://$HOST:$PORT/govbank/data-docs/files
Dashboard    政银合作看板 in the top bar, or http://$HOST:$PORT/govbank/dashboard/
Stop         scripts/airflow-stop.sh
EOF
