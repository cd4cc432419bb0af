#!/usr/bin/env bash
# Airflow scaled out with its own CeleryExecutor, on one machine, on loopback only:
# scheduler, dag-processor, api-server and two Celery workers, with the Airflow
# metadata on the local PostgreSQL, Redis as the broker, task results in PostgreSQL,
# and the warehouse in a PostgreSQL database of its own. The demo drop waits in the
# landing folder, so triggering govbank_ingest loads it (docs/scale-out.md).
#
#   celery-stack.sh start    fresh databases and demo drop, start every process, wait until healthy
#   celery-stack.sh status   which processes run, and the API's health
#   celery-stack.sh stop     stop every process, drop both databases, empty the Redis database
#
# Each worker runs in a UTS namespace of its own (`unshare --uts`, or with a user
# namespace when not root) with its own host name (govbank-w1, govbank-w2): Airflow
# records in task_instance.hostname which "machine" ran each task, as it would for
# two real machines. The workers' log servers are off (they listen on every
# interface); the task logs are files under the shared log folder instead.
#
# Settings (environment; defaults in brackets):
#   GOVBANK_CELERY_DIR          state: Airflow home, landing, pid files [.local/celery]
#   GOVBANK_CELERY_LOGS         process and task logs [$GOVBANK_CELERY_DIR/logs]
#   GOVBANK_CELERY_AIRFLOW_DB   Airflow metadata database, dropped and re-created [govbank_airflow_ci]
#   GOVBANK_CELERY_WAREHOUSE_DB warehouse database, dropped and re-created [govbank_warehouse_ci]
#   GOVBANK_CELERY_REDIS_DB     Redis database number of the broker, emptied [12]
#   GOVBANK_CELERY_API_PORT     api-server port [a free one]
#   GOVBANK_CELERY_CONCURRENCY  task slots per worker [3: five banks run at once]
#   GOVBANK_PG_HOST / _PORT / _USER  PostgreSQL server and its superuser, trust auth [127.0.0.1/5432/postgres]
#   GOVBANK_REDIS_HOST / _PORT  Redis server [127.0.0.1/6379]
#   GOVBANK_PSEUDONYM_KEY       as in scripts/env.sh [generated once per checkout]
#   GOVBANK_CELERY_PYCACHE      bytecode cache of every process (PYTHONPYCACHEPREFIX) [.local/pycache]
#   GOVBANK_WARM_UP             "off": workers start cold, every task imports GX itself [on]
# `start` writes $GOVBANK_CELERY_DIR/stack.env: source it to use the airflow CLI on the
# stack; it also gives the API's URL (GOVBANK_CELERY_API_URL) and the file with the
# admin password (GOVBANK_CELERY_PASSWORDS).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="$(mkdir -p "${GOVBANK_CELERY_DIR:-$ROOT/.local/celery}" && cd "${GOVBANK_CELERY_DIR:-$ROOT/.local/celery}" && pwd)"
ENV_FILE="$STATE/stack.env"
PIDS="$STATE/pids"
PROCESSES=(api-server scheduler dag-processor worker-w1 worker-w2)

log() { printf '== %s\n' "$*"; }

pg() {  # pg SQL: run one statement on the server's postgres database
  psql -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -c "$1"
}

secret() {
  python3 -c 'import secrets; print(secrets.token_urlsafe(32))'
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

alive() {  # alive NAME: its process group still has a member
  [ -s "$PIDS/$1.pid" ] && kill -0 -- "-$(cat "$PIDS/$1.pid")" 2>/dev/null
}

write_env() {
  local api_port="${GOVBANK_CELERY_API_PORT:-$(free_port)}"
  local airflow_db="${GOVBANK_CELERY_AIRFLOW_DB:-govbank_airflow_ci}"
  local warehouse_db="${GOVBANK_CELERY_WAREHOUSE_DB:-govbank_warehouse_ci}"
  local pg="$PG_USER@$PG_HOST:$PG_PORT"
  local pycache="${GOVBANK_CELERY_PYCACHE:-$ROOT/.local/pycache}"
  local logs
  logs="$(mkdir -p "${GOVBANK_CELERY_LOGS:-$STATE/logs}" && cd "${GOVBANK_CELERY_LOGS:-$STATE/logs}" && pwd)"
  # shared by every process: the JWT secret signs the tokens workers use on the execution API
  umask 077
  cat > "$ENV_FILE" <<EOF
# written by scripts/celery-stack.sh start; source it to reach this stack
export GOVBANK_CELERY_LOGS='$logs'
export GOVBANK_CELERY_AIRFLOW_DB='$airflow_db'
export GOVBANK_CELERY_WAREHOUSE_DB='$warehouse_db'
export GOVBANK_CELERY_REDIS_DB='$REDIS_DB'
export GOVBANK_CELERY_API_URL='http://127.0.0.1:$api_port'
export GOVBANK_CELERY_PASSWORDS='$STATE/airflow/simple_auth_manager_passwords.json.generated'
export AIRFLOW_HOME='$STATE/airflow'
export GOVBANK_LOCAL_DIR='$STATE/local'
export GOVBANK_WARM_UP='${GOVBANK_WARM_UP:-on}'
export GOVBANK_WAREHOUSE_URL='postgresql+psycopg://$pg/$warehouse_db'
export AIRFLOW__CORE__EXECUTOR=CeleryExecutor
# warm workers: each worker imports Great Expectations and builds the validator once,
# before it forks its pool and tasks (docs/scale-out.md, "Warm workers")
export AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=govbank.orchestration.workers.CELERY_CONFIG
export AIRFLOW__CORE__PARALLELISM=$((2 * CONCURRENCY))
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN='postgresql+psycopg://$pg/$airflow_db'
export AIRFLOW__CELERY__BROKER_URL='redis://$REDIS_HOST:$REDIS_PORT/$REDIS_DB'
export AIRFLOW__CELERY__RESULT_BACKEND='db+postgresql://$pg/$airflow_db'
export AIRFLOW__CELERY__WORKER_CONCURRENCY=$CONCURRENCY
export AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER=1
export AIRFLOW__API__HOST=127.0.0.1
export AIRFLOW__API__PORT=$api_port
export AIRFLOW__API__BASE_URL='http://127.0.0.1:$api_port'
export AIRFLOW__API__WORKERS=1
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL='http://127.0.0.1:$api_port/execution/'
export AIRFLOW__API_AUTH__JWT_SECRET='$(secret)'
export AIRFLOW__API__SECRET_KEY='$(secret)'
export AIRFLOW__LOGGING__BASE_LOG_FOLDER='$logs/tasks'
export AIRFLOW__LOGGING__LOGGING_LEVEL=INFO
# compiled bytecode kept outside the venv and the repository, written once and read by
# every later process (each task is a new process that imports Airflow, pandas and GX)
unset PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX='$pycache'
EOF
  umask 022
}

load_env() {
  [ -f "$ENV_FILE" ] || { echo "no stack in $STATE (run start first)" >&2; return 1; }
  # shellcheck disable=SC1090
  source "$ENV_FILE"
  # the project's environment (DAGs folder, examples off, time zone, pseudonym key)
  source "$ROOT/scripts/env.sh"
}

logged() {  # logged NAME COMMAND...: output to NAME.log, its end shown if the command fails
  "${@:2}" > "$GOVBANK_CELERY_LOGS/$1.log" 2>&1 && return 0
  local rc=$?
  echo "$1 failed ($rc); the end of its log:" >&2
  tail -n 30 "$GOVBANK_CELERY_LOGS/$1.log" >&2
  return "$rc"
}

launch() {  # launch NAME COMMAND...: in a session of its own, so stop can end the whole group
  local name="$1"; shift
  setsid bash -c 'echo $$ > "$0"; exec "$@"' "$PIDS/$name.pid" "$@" \
    > "$GOVBANK_CELERY_LOGS/$name.log" 2>&1 < /dev/null &
}

ns_prefix() {  # how to give a worker a host name of its own
  local ns=(unshare --uts)
  [ "$(id -u)" = 0 ] || ns=(unshare --user --map-root-user --uts)
  echo "${ns[*]}"
}

wait_for() {  # wait_for SECONDS WHAT COMMAND...: poll until COMMAND succeeds
  local deadline=$((SECONDS + $1)) what="$2"; shift 2
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "timed out waiting for $what" >&2
      return 1
    fi
    for p in "${PROCESSES[@]}"; do
      if [ -s "$PIDS/$p.pid" ] && ! alive "$p"; then
        echo "$p exited; the end of its log:" >&2
        tail -n 30 "$GOVBANK_CELERY_LOGS/$p.log" >&2
        return 1
      fi
    done
    sleep 1
  done
}

healthy() {  # the API answers and sees a live scheduler and dag-processor
  python3 - "$GOVBANK_CELERY_API_URL/api/v2/monitor/health" <<'PY'
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
    h = json.load(r)
sys.exit(0 if all(h.get(k, {}).get("status") == "healthy"
                  for k in ("metadatabase", "scheduler", "dag_processor")) else 1)
PY
}

start() {
  for p in "${PROCESSES[@]}"; do
    if alive "$p"; then echo "$p is already running: $0 stop first" >&2; exit 1; fi
  done
  pg_isready -q -h "$PG_HOST" -p "$PG_PORT" || { echo "PostgreSQL is not up on $PG_HOST:$PG_PORT" >&2; exit 1; }
  redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping > /dev/null || { echo "Redis is not up" >&2; exit 1; }
  read -r -a ns <<< "$(ns_prefix)"
  "${ns[@]}" true || { echo "cannot create a UTS namespace for the workers (${ns[*]})" >&2; exit 1; }

  rm -rf "$PIDS" "$STATE/airflow" "$STATE/local"
  mkdir -p "$PIDS"
  write_env
  load_env
  trap 'on_failed_start' EXIT
  mkdir -p "$GOVBANK_CELERY_LOGS/tasks"

  log "fresh databases $GOVBANK_CELERY_AIRFLOW_DB and $GOVBANK_CELERY_WAREHOUSE_DB, Redis db $REDIS_DB"
  for db in "$GOVBANK_CELERY_AIRFLOW_DB" "$GOVBANK_CELERY_WAREHOUSE_DB"; do
    pg "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)"
    pg "CREATE DATABASE \"$db\""
  done
  redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" -n "$REDIS_DB" flushdb > /dev/null

  log "migrations (Airflow metadata, warehouse) and the demo drop"
  cd "$ROOT"
  airflow db migrate > "$GOVBANK_CELERY_LOGS/db-migrate.log" 2>&1 &
  MIGRATE_PID=$!
  logged warehouse-migrate python -m govbank migrate
  # what the processes and tasks import, compiled once now rather than by each of them
  logged warm-bytecode python -c 'import airflow.providers.celery.executors.celery_executor, airflow.api_fastapi.app, airflow.jobs.scheduler_job_runner, airflow.sdk.execution_time.task_runner, great_expectations, govbank.ingest.run, govbank.orchestration.runtime'
  logged demo-drop python -m govbank_dev.demo --landing "$GOVBANK_LOCAL_DIR/landing"
  wait "$MIGRATE_PID" || { MIGRATE_PID=; echo "airflow db migrate failed:" >&2; tail -n 30 "$GOVBANK_CELERY_LOGS/db-migrate.log" >&2; false; }
  MIGRATE_PID=

  log "api-server on $GOVBANK_CELERY_API_URL, scheduler, dag-processor"
  launch api-server airflow api-server
  launch scheduler airflow scheduler --skip-serve-logs
  launch dag-processor airflow dag-processor
  for n in 1 2; do
    log "worker w$n@govbank-w$n (queue default, $CONCURRENCY slots)"
    launch "worker-w$n" "${ns[@]}" bash -c 'hostname "$0" && exec "$@"' "govbank-w$n" \
      airflow celery worker --celery-hostname "w$n@%h" --queues default \
      --concurrency "$CONCURRENCY" --skip-serve-logs --pid "$PIDS/celery-w$n.pid"
  done

  wait_for 240 "the api-server, scheduler and dag-processor to be healthy" healthy
  for n in 1 2; do
    wait_for 120 "worker w$n" grep -q "w$n@govbank-w$n ready" "$GOVBANK_CELERY_LOGS/worker-w$n.log"
  done
  trap - EXIT
  log "up: $GOVBANK_CELERY_API_URL (admin password in $GOVBANK_CELERY_PASSWORDS); stop with: $0 stop"
}

on_failed_start() {
  local rc=$?
  trap - EXIT
  echo "start failed; stopping what was started (logs in $GOVBANK_CELERY_LOGS)" >&2
  [ -z "${MIGRATE_PID:-}" ] || { kill "$MIGRATE_PID" 2>/dev/null; wait "$MIGRATE_PID" 2>/dev/null; } || true
  stop
  exit "$rc"
}

stop() {
  if [ ! -f "$ENV_FILE" ]; then echo "no stack in $STATE"; return 0; fi
  load_env
  for p in "${PROCESSES[@]}"; do
    alive "$p" && kill -TERM -- "-$(cat "$PIDS/$p.pid")" 2>/dev/null || true
  done
  # a worker finishes its running tasks first (warm shutdown); the dag-processor may go
  # on parsing after TERM and holds nothing worth waiting for
  local t0=$SECONDS grace
  for p in "${PROCESSES[@]}"; do
    grace=60; [ "$p" != dag-processor ] || grace=10
    while alive "$p" && [ $((SECONDS - t0)) -lt "$grace" ]; do sleep 0.5; done
    if alive "$p"; then
      echo "$p did not stop on TERM: KILL" >&2
      kill -KILL -- "-$(cat "$PIDS/$p.pid")" 2>/dev/null || true
    fi
    rm -f "$PIDS/$p.pid"
  done
  for db in "$GOVBANK_CELERY_AIRFLOW_DB" "$GOVBANK_CELERY_WAREHOUSE_DB"; do
    pg "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" || true
  done
  redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" -n "$GOVBANK_CELERY_REDIS_DB" flushdb > /dev/null || true
  rm -f "$ENV_FILE"
  log "stopped; databases dropped; logs kept in $GOVBANK_CELERY_LOGS"
}

status() {
  load_env
  for p in "${PROCESSES[@]}"; do
    if alive "$p"; then echo "$p: running (process group $(cat "$PIDS/$p.pid"))"; else echo "$p: not running"; fi
  done
  python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
    "$GOVBANK_CELERY_API_URL/api/v2/monitor/health" || echo "the API does not answer"
}

PG_HOST="${GOVBANK_PG_HOST:-127.0.0.1}"
PG_PORT="${GOVBANK_PG_PORT:-5432}"
PG_USER="${GOVBANK_PG_USER:-postgres}"
REDIS_HOST="${GOVBANK_REDIS_HOST:-127.0.0.1}"
REDIS_PORT="${GOVBANK_REDIS_PORT:-6379}"
REDIS_DB="${GOVBANK_CELERY_REDIS_DB:-12}"
CONCURRENCY="${GOVBANK_CELERY_CONCURRENCY:-3}"

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
esac
