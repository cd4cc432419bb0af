#!/usr/bin/env bash
# First start of the PostgreSQL volume: one database and login role for Airflow's
# metadata, one database for the warehouse owned by the pipeline's writer role, and
# the dashboard role, which may connect but reads nothing until the warehouse
# migrations and airflow-init grant it the marts and dimensions.
# Names and passwords come from the environment (.env through docker-compose.yml);
# psql's :'var' quoting keeps them literal.
set -euo pipefail

: "${AIRFLOW_DB_NAME:?}" "${AIRFLOW_DB_USER:?}" "${AIRFLOW_DB_PASSWORD:?}"
: "${WAREHOUSE_DB_NAME:?}" "${WAREHOUSE_DB_USER:?}" "${WAREHOUSE_DB_PASSWORD:?}"
: "${DASHBOARD_DB_USER:?}" "${DASHBOARD_DB_PASSWORD:?}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v airflow_db="$AIRFLOW_DB_NAME" -v airflow_user="$AIRFLOW_DB_USER" \
    -v airflow_password="$AIRFLOW_DB_PASSWORD" \
    -v warehouse_db="$WAREHOUSE_DB_NAME" -v writer="$WAREHOUSE_DB_USER" \
    -v writer_password="$WAREHOUSE_DB_PASSWORD" \
    -v dashboard="$DASHBOARD_DB_USER" -v dashboard_password="$DASHBOARD_DB_PASSWORD" <<'SQL'
CREATE ROLE :"airflow_user" LOGIN PASSWORD :'airflow_password';
CREATE DATABASE :"airflow_db" OWNER :"airflow_user";
REVOKE ALL ON DATABASE :"airflow_db" FROM PUBLIC;

CREATE ROLE :"writer" LOGIN PASSWORD :'writer_password';
CREATE ROLE :"dashboard" LOGIN PASSWORD :'dashboard_password'
    NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
CREATE DATABASE :"warehouse_db" OWNER :"writer";
REVOKE ALL ON DATABASE :"warehouse_db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"warehouse_db" TO :"dashboard";
SQL

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$WAREHOUSE_DB_NAME" \
    -v warehouse_db="$WAREHOUSE_DB_NAME" -v writer="$WAREHOUSE_DB_USER" \
    -v dashboard="$DASHBOARD_DB_USER" <<'SQL'
REVOKE ALL ON SCHEMA public FROM PUBLIC;
CREATE SCHEMA IF NOT EXISTS govbank AUTHORIZATION :"writer";
GRANT USAGE ON SCHEMA govbank TO :"dashboard";
ALTER ROLE :"dashboard" IN DATABASE :"warehouse_db" SET default_transaction_read_only = on;
SQL
