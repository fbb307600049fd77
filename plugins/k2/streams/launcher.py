"""Submits one exchange's Bronze job with the Apache Spark provider's SparkSubmitHook.

Run detached by the supervisor (``python -m k2.streams.launcher --exchange binance``): it lives as
long as the job, forwards spark-submit's output to the stream log, and exits with the job. The
Spark master comes from K2_SPARK_MASTER through the ``k2_spark`` Airflow connection, which is
defined here from K2's settings unless the deployment defines it (env, secrets backend, UI).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from k2.log import configure_logging, get_logger
from k2.settings import PROJECT_ROOT, Settings, load_settings
from k2.spark import is_local, spark_conf

log = get_logger(__name__)

SPARK_CONN_ID = "k2_spark"
BRONZE_APPLICATION = PROJECT_ROOT / "spark_jobs" / "bronze_ingest.py"


def submit_hook(settings: Settings, exchange: str):
    """The SparkSubmitHook for one exchange's stream (importing Airflow only here)."""
    from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook

    env_conn = f"AIRFLOW_CONN_{SPARK_CONN_ID.upper()}"
    os.environ.setdefault(env_conn, json.dumps({"conn_type": "spark", "host": settings.spark_master}))
    conf = spark_conf(settings, f"k2-bronze-{exchange}")
    conf.pop("spark.master")  # the connection carries the master
    conf.pop("spark.app.name")
    conf["spark.driver.memory"] = settings.stream_driver_memory
    python = sys.executable
    bin_dir = str(Path(python).parent)  # spark-submit ships with pyspark, next to this interpreter
    os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    return SparkSubmitHook(
        conn_id=SPARK_CONN_ID, conf=conf, name=f"k2-bronze-{exchange}", spark_binary="spark-submit",
        application_args=["--exchange", exchange], verbose=False,
        env_vars={"PYSPARK_PYTHON": python, "PYSPARK_DRIVER_PYTHON": python, "PATH": os.environ["PATH"],
                  # local mode stays on loopback instead of the first network interface
                  **({"SPARK_LOCAL_IP": "127.0.0.1"} if is_local(settings) else {})},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Submit a Bronze stream through SparkSubmitHook.")
    parser.add_argument("--exchange", required=True)
    args = parser.parse_args(argv)
    settings = load_settings()
    configure_logging(settings)
    os.environ.setdefault("AIRFLOW_HOME", str(settings.home / "airflow"))
    hook = submit_hook(settings, args.exchange)
    log.info("stream.submitting", exchange=args.exchange, master=settings.spark_master,
             application=str(BRONZE_APPLICATION))
    try:
        hook.submit(application=str(BRONZE_APPLICATION))
    except Exception as exc:  # the provider raises AirflowException with spark-submit's exit code
        log.error("stream.exited", exchange=args.exchange, error=str(exc)[:500])
        return 1
    log.info("stream.exited", exchange=args.exchange, returncode=0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
