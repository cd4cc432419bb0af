#!/usr/bin/env bash
# The stack's Airflow roles and admin on the FAB auth manager, after `airflow db migrate`
# (docker/airflow-init.sh runs it; tests/integration/test_compose.py runs it on a real Airflow).
#
#   govbank_engineer  data engineers: FAB's User permissions (read everything, trigger,
#                     clear, pause DAGs); no connections, variables or users
#   govbank_viewer    district staff: FAB's Viewer permissions (DAGs, runs, logs, the
#                     dashboard and Data Docs pages); cannot trigger, clear or pause
#
# docker/fab-roles.json lists both. A role that exists already is left as it is
# (`airflow roles import` does not overwrite), so an administrator's later changes in
# Security > List Roles survive a restart. The admin gets FAB's Admin role; a changed
# AIRFLOW_ADMIN_PASSWORD takes effect on the next run. AIRFLOW_CLI is how to call airflow.
set -euo pipefail
: "${AIRFLOW_ADMIN_USER:?}" "${AIRFLOW_ADMIN_PASSWORD:?}"
read -r -a AIRFLOW <<< "${AIRFLOW_CLI:-airflow}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# FAB's built-in roles, and every resource and action the roles file names
"${AIRFLOW[@]}" sync-perm
"${AIRFLOW[@]}" roles import "$HERE/fab-roles.json"

created="$("${AIRFLOW[@]}" users create --role Admin --username "$AIRFLOW_ADMIN_USER" \
    --password="$AIRFLOW_ADMIN_PASSWORD" --firstname govbank --lastname admin \
    --email "${AIRFLOW_ADMIN_USER}@localhost")"
echo "$created"
if [[ "$created" == *"already exists"* ]]; then
    "${AIRFLOW[@]}" users reset-password --username "$AIRFLOW_ADMIN_USER" --password="$AIRFLOW_ADMIN_PASSWORD"
fi
