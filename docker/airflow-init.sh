#!/usr/bin/env bash
# One-shot set-up before the Airflow services start (the airflow-init service, as root):
# folder ownership, Airflow's metadata database, the roles and the admin user (FAB auth
# manager, docker/airflow-roles.sh), the warehouse migrations and the dashboard role's
# grants. Safe to run again: every step is idempotent, and a changed admin password in
# .env takes effect on the next run.
# Airflow commands go through the image's /entrypoint, which waits for the database
# and finds the airflow user's packages when run as root.
set -euo pipefail

: "${AIRFLOW_UID:?}" "${AIRFLOW_ADMIN_USER:?}" "${AIRFLOW_ADMIN_PASSWORD:?}"
: "${GOVBANK_WAREHOUSE_URL:?}" "${GOVBANK_LOCAL_DIR:?}"

step() { echo "airflow-init: $*" >&2; }

step "folders owned by ${AIRFLOW_UID}:0"
mkdir -p /opt/airflow/logs "$GOVBANK_LOCAL_DIR"
chown -R "${AIRFLOW_UID}:0" /opt/airflow/logs "$GOVBANK_LOCAL_DIR"

step "Airflow metadata database"
/entrypoint airflow db migrate

step "roles govbank_engineer and govbank_viewer, admin user ${AIRFLOW_ADMIN_USER} (FAB auth manager)"
AIRFLOW_CLI="/entrypoint airflow" bash /opt/airflow/docker/airflow-roles.sh

step "warehouse migrations"
/entrypoint python -m govbank migrate

step "dashboard role grants"
/entrypoint python /opt/airflow/docker/grant_dashboard.py

step "done"
