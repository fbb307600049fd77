"""The operator of the Bronze -> Silver -> Gold batch: one layer, one exchange, one interval."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from k2.airflow.intervals import catches_up, run_interval
from k2.reports import JobFailure
from k2.resources import spark_job_file
from k2.settings import load_settings

if TYPE_CHECKING:
    from k2.airflow.hooks.spark import K2SparkSubmitHook
    from k2.airflow.hooks.spark_connect import K2SparkConnectHook

MEDALLION_APPLICATION = spark_job_file("medallion")
LAYERS = ("silver", "gold")


class MedallionOperator(BaseOperator):
    """Runs the batch job (``k2.medallion.job``) for one layer (silver or gold), exchange and
    interval, on Spark Connect or through spark-submit (k2.airflow.hooks.spark_connect), and returns
    the job's report (counts, dead-letter reasons, quality). Killing the task interrupts its Spark
    work and stops the job. Wrong parameters and a critical quality failure fail the task without
    retries (the job says so in its report file: see ``k2.reports.JobFailure``)."""

    template_fields = ("exchange",)
    ui_color = "#c0c0c0"

    def __init__(self, *, layer: str, exchange: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if layer not in LAYERS:
            raise ValueError(f"layer must be silver or gold, not {layer!r}")
        self.layer = layer
        self.exchange = exchange
        self.hook: K2SparkConnectHook | K2SparkSubmitHook | None = None

    def execute(self, context: Any) -> dict[str, Any]:
        from k2.airflow.hooks.spark_connect import spark_job_hook
        from k2.medallion.reports import medallion_report

        interval = run_interval(context, self.exchange)
        self.log.info("submitting %s for %s", self.layer, interval.label)
        with tempfile.TemporaryDirectory(prefix="k2-job-") as tmp:
            report_file = Path(tmp) / "report.json"
            settings = load_settings()
            self.hook = spark_job_hook(
                settings,
                name=f"k2-{self.layer}-{self.exchange}",
                application=MEDALLION_APPLICATION,
                application_args=[
                    "--layer",
                    self.layer,
                    "--exchange",
                    self.exchange,
                    "--start",
                    interval.start.isoformat(),
                    "--end",
                    interval.end.isoformat(),
                    "--report",
                    str(report_file),
                    *(["--catch-up"] if catches_up(context) else []),
                ],
                nice=settings.spark.batch_nice,
            )
            submit_or_fail_for_good(self.hook, report_file)
            report = medallion_report(json.loads(report_file.read_text()))
        for line in report.lines():
            self.log.info("%s", line)
        return report.to_dict()

    def on_kill(self) -> None:
        if self.hook is not None:
            self.hook.on_kill()


def submit_or_fail_for_good(hook: Any, report_file: Path) -> None:
    """Runs the job; a failure it reported as one a retry would repeat fails the task for good."""
    try:
        hook.submit()
    except AirflowException as exc:
        failure = JobFailure.found_in(report_file)
        if failure is None:
            raise  # anything else (an outage, a crash) may pass on a retry
        raise (AlertedFailure if failure.alerted else AirflowFailException)(failure.message) from exc


class AlertedFailure(AirflowFailException):
    """A task failed for good whose alert the job already sent: the failure callback sends none."""

    already_alerted = True
