# syntax=docker/dockerfile:1
# K2's one image. Every Airflow service (API server, scheduler, DAG processor, triggerer) and every
# Spark service (master, workers) of docker-compose.yaml runs it: JDK 17, the Python stack pinned in
# pyproject.toml (pyspark brings Spark itself: spark-class, spark-submit and Spark's jars), K2's
# resolved JVM artifacts, and K2 installed from its wheel.
#
#   docker build -t k2:0.1.0 .
#
# This project's CI has no Docker engine: it never builds this file, it lints it
# (tests/unit/test_deploy_files.py) and checks docker-compose.yaml with `docker-compose config`.

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# --- build: the wheel, the virtualenv, the jars ----------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
# Debian's JDK and Maven follow bookworm's security updates, so their versions are not pinned
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jdk-headless maven \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY plugins ./plugins
COPY spark_jobs ./spark_jobs
# K2's pins decide the stack; psycopg2 is the PostgreSQL driver of Airflow's DB and the Iceberg catalog
RUN python -m venv /opt/k2/venv \
 && /opt/k2/venv/bin/pip install --no-cache-dir build==1.2.2.post1 \
 && /opt/k2/venv/bin/python -m build --wheel --outdir /dist . \
 && /opt/k2/venv/bin/pip install --no-cache-dir /dist/k2_lakehouse-*.whl psycopg2-binary==2.9.10 \
 && /opt/k2/venv/bin/pip uninstall -y build
# the jars with the S3 profile (S3 file IO), selected by K2_WAREHOUSE; the PostgreSQL JDBC driver is always in
# (no Spark class archive: it is valid only for the JDK that builds it, and this stage's is not the runtime's)
RUN K2_HOME=/tmp/k2 K2_JARS_DIR=/opt/k2/jars K2_WAREHOUSE=s3://k2-lake/warehouse K2_SPARK_CLASS_ARCHIVE=false \
    /opt/k2/venv/bin/k2 jars \
 && rm -rf /root/.m2 /tmp/k2

# --- runtime ---------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
# tini reaps the detached processes K2 starts (Bronze stream drivers, the Spark Connect server)
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 50000 --gid 0 --create-home --home-dir /home/k2 k2
COPY --from=build /opt/k2 /opt/k2
ENV PATH=/opt/k2/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    K2_HOME=/opt/k2/home \
    K2_JARS_DIR=/opt/k2/jars \
    K2_SPARK_CLASS_ARCHIVE=false \
    AIRFLOW_HOME=/opt/k2/home/airflow \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/k2/dags \
    AIRFLOW__CORE__LOAD_EXAMPLES=False
# a stable path for Airflow's dags_folder: the DAG files K2's wheel installed (`k2 airflow dags-folder`)
RUN ln -s "$(K2_HOME=/tmp/k2 k2 airflow dags-folder)" /opt/k2/dags \
 && rm -rf /tmp/k2 \
 && mkdir -p /opt/k2/home \
 && chown k2:0 /opt/k2/home \
 && chmod 0700 /opt/k2/home
USER k2
WORKDIR /home/k2
# No image-wide health check: the image runs six different services; each service in
# docker-compose.yaml declares its own (API server health, scheduler health, `airflow jobs check`,
# Spark master and worker UIs).
HEALTHCHECK NONE
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["k2", "--help"]
