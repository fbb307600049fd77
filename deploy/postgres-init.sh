#!/bin/sh
# Run once by the postgres image on an empty data directory (docker-entrypoint-initdb.d): Airflow's
# metadata database and the Iceberg JDBC catalog, each owned by its own user. Passwords come from
# the container's environment (docker-compose.yaml passes them from .env).
set -eu
psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" \
  -v airflow_password="$AIRFLOW_DB_PASSWORD" -v iceberg_password="$ICEBERG_DB_PASSWORD" <<'SQL'
CREATE USER airflow PASSWORD :'airflow_password';
CREATE DATABASE airflow OWNER airflow;
CREATE USER iceberg PASSWORD :'iceberg_password';
CREATE DATABASE iceberg OWNER iceberg;
SQL
