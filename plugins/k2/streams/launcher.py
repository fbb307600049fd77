"""Submits one exchange's Bronze job with the Apache Spark provider's SparkSubmitHook.

Run detached by the supervisor (``python -m k2.streams.launcher --exchange binance``): it lives as
long as the job, forwards spark-submit's output to the stream log, and exits with the job. The
Spark master comes from K2_SPARK_MASTER through the ``k2_spark`` Airflow connection, which is
defined here from K2's settings unless the deployment defines it (env, secrets backend, UI).
"""

from __future__ import annotations

import argparse
import os
import sys

from k2.log import configure_logging, get_logger
from k2.settings import PROJECT_ROOT, Settings, load_settings

log = get_logger(__name__)

BRONZE_APPLICATION = PROJECT_ROOT / "spark_jobs" / "bronze_ingest.py"


def submit_hook(settings: Settings, exchange: str):
    """The SparkSubmitHook for one exchange's stream."""
    from k2.airflow.hooks import spark_submit_hook

    return spark_submit_hook(settings, name=f"k2-bronze-{exchange}", application_args=["--exchange", exchange],
                             driver_memory=settings.stream_driver_memory)


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
