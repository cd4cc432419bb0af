#!/usr/bin/env bash
# Stop what scripts/airflow-standalone.sh started: TERM to its whole process group
# (API server, scheduler, dag-processor, triggerer and their task processes), up to
# AIRFLOW_STOP_TIMEOUT seconds (default 30) for them to finish, then KILL what is left.
set -euo pipefail
source "$(dirname "$0")/env.sh"
PIDFILE="${AIRFLOW_PIDFILE:-$AIRFLOW_HOME/standalone.pid}"
TIMEOUT="${AIRFLOW_STOP_TIMEOUT:-30}"

if [ ! -s "$PIDFILE" ]; then
  echo "no $PIDFILE: Airflow standalone is not running from here"
  exit 0
fi
PGID="$(cat "$PIDFILE")"
case "$PGID" in
  ''|*[!0-9]*|0|1) echo "bad process group in $PIDFILE: '$PGID'" >&2; exit 1 ;;
esac

# a process of the group that still runs (a zombie waiting to be reaped does not count)
running() {
  ps -e -o pgid=,stat= | awk -v g="$PGID" '$1 == g && $2 !~ /^Z/ { found = 1 } END { exit !found }'
}

if running; then
  kill -TERM -- "-$PGID" 2>/dev/null || true
  for _ in $(seq $((TIMEOUT * 2))); do
    running || break
    sleep 0.5
  done
  if running; then
    echo "still running after ${TIMEOUT} s, killing:"
    ps -e -o pgid=,pid=,args= | awk -v g="$PGID" '$1 == g' | cut -c1-120
    kill -KILL -- "-$PGID" 2>/dev/null || true
    sleep 1
  fi
fi
rm -f "$PIDFILE"
echo "Airflow standalone stopped (process group $PGID)"
