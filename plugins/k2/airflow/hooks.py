"""Hooks: how K2 talks to Spark through the Apache Spark provider."""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from pathlib import Path

from k2.settings import Settings
from k2.spark import is_local, spark_conf

SPARK_CONN_ID = "k2_spark"


def spark_submit_hook(settings: Settings, *, name: str, application_args: list[str], driver_memory: str | None = None):
    """A SparkSubmitHook for one of K2's Spark jobs (importing Airflow only here).

    The master comes from the ``k2_spark`` connection, defined from K2_SPARK_MASTER unless the
    deployment defines it (environment, secrets backend, UI); every other Spark setting comes from
    k2.spark, the same as for an in-process session.
    """
    from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook

    os.environ.setdefault(f"AIRFLOW_CONN_{SPARK_CONN_ID.upper()}",
                          json.dumps({"conn_type": "spark", "host": settings.spark_master}))
    conf = spark_conf(settings, name)
    conf.pop("spark.master")  # the connection carries the master
    conf.pop("spark.app.name")
    if driver_memory:
        conf["spark.driver.memory"] = driver_memory
    python = sys.executable
    bin_dir = str(Path(python).parent)  # spark-submit ships with pyspark, next to this interpreter
    path = bin_dir + os.pathsep + os.environ.get("PATH", "")
    os.environ["PATH"] = path
    return SparkSubmitHook(
        conn_id=SPARK_CONN_ID, conf=conf, name=name, spark_binary="spark-submit",
        application_args=application_args, verbose=False,
        env_vars={"PYSPARK_PYTHON": python, "PYSPARK_DRIVER_PYTHON": python, "PATH": path,
                  # local mode stays on loopback instead of the first network interface
                  **({"SPARK_LOCAL_IP": "127.0.0.1"} if is_local(settings) else {})},
    )


def submit_job(settings: Settings, *, name: str, application: Path, args: list[str],
               log: logging.Logger | None = None) -> dict:
    """spark-submit one of K2's jobs with ``--report`` and return the JSON report it wrote. A job
    that fails after writing its report (e.g. maintenance with one bad table) still has it logged."""
    with tempfile.TemporaryDirectory(prefix="k2-job-") as tmp:
        report_file = Path(tmp) / "report.json"
        hook = spark_submit_hook(settings, name=name, application_args=[*args, "--report", str(report_file)])
        try:
            hook.submit(application=str(application))
        finally:
            if report_file.is_file() and log is not None:
                log.info("report: %s", report_file.read_text())
        return json.loads(report_file.read_text())
