# Sourced by the scripts: the project's embedded-default environment, all under .local/.
# Everything can be overridden from the caller's environment.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$ROOT/.venv/bin:$PATH"
# keep compiled bytecode (Airflow, pandas, GX) between processes: imports cost half as much
unset PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX="${PYTHONPYCACHEPREFIX:-$ROOT/.local/pycache}"
export GOVBANK_LOCAL_DIR="${GOVBANK_LOCAL_DIR:-$ROOT/.local/demo}"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$ROOT/.local/airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$ROOT/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DEFAULT_TIMEZONE=Asia/Shanghai
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-sqlite:///$AIRFLOW_HOME/airflow.db}"
export AIRFLOW__CORE__PARALLELISM="${AIRFLOW__CORE__PARALLELISM:-4}"
export AIRFLOW__LOGGING__LOGGING_LEVEL="${AIRFLOW__LOGGING__LOGGING_LEVEL:-WARNING}"
mkdir -p "$AIRFLOW_HOME" "$GOVBANK_LOCAL_DIR" "$ROOT/.local"
# The pseudonym key: a secret, generated once per checkout, never committed.
if [ -z "${GOVBANK_PSEUDONYM_KEY:-}" ]; then
  keyfile="$ROOT/.local/pseudonym.key"
  [ -s "$keyfile" ] || (umask 077 && python3 -c 'import secrets; print(secrets.token_hex(32))' > "$keyfile")
  GOVBANK_PSEUDONYM_KEY="$(cat "$keyfile")"
  export GOVBANK_PSEUDONYM_KEY
fi
