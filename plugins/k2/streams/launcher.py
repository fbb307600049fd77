"""Submits one exchange's Bronze job with spark-submit.

Run detached by the supervisor (``python -m k2.streams.launcher --exchange binance``): it lives as
long as the job, spark-submit's output goes to the stream log, and it exits with the job. The
master is K2_SPARK_MASTER; every other Spark setting comes from k2.spark, as for batch jobs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from k2.log import configure_logging, get_logger
from k2.resources import spark_job_file
from k2.settings import Settings, load_settings
from k2.spark import STREAM, SparkJob, spark_job

log = get_logger(__name__)

BRONZE_APPLICATION = spark_job_file("bronze_ingest")


def bronze_job(settings: Settings, exchange: str) -> SparkJob:
    """The spark-submit of one exchange's stream."""
    return spark_job(
        settings,
        name=f"k2-bronze-{exchange}",
        application=BRONZE_APPLICATION,
        args=["--exchange", exchange],
        driver_memory=settings.streams.driver_memory,
        role=STREAM,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Submit a Bronze stream with spark-submit.")
    parser.add_argument("--exchange", required=True)
    args = parser.parse_args(argv)
    settings = load_settings()
    configure_logging(settings)
    job = bronze_job(settings, args.exchange)
    log.info(
        "stream.submitting", exchange=args.exchange, master=settings.spark.master, application=str(BRONZE_APPLICATION)
    )
    # spark-submit is found on the job's PATH (next to this interpreter); the conf travels in the
    # command line, as with the Airflow hook
    returncode = subprocess.call(job.command(settings.spark.master), env={**os.environ, **job.env})
    log.info("stream.exited", exchange=args.exchange, returncode=returncode)
    return 0 if returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
