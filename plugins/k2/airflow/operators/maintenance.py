"""The operator of the maintenance DAG: one namespace's Iceberg tables per task."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from k2.errors import K2Error
from k2.lake.names import NAMESPACES
from k2.resources import spark_job_file
from k2.settings import load_settings

if TYPE_CHECKING:
    from k2.airflow.hooks.spark import K2SparkSubmitHook
    from k2.airflow.hooks.spark_connect import K2SparkConnectHook

MAINTENANCE_APPLICATION = spark_job_file("maintenance")


class IcebergMaintenanceOperator(BaseOperator):
    """Compacts data files, rewrites manifests, expires snapshots and removes orphan files on every
    table of ``namespace`` (``k2.lake.maintenance_job``, on Spark Connect or spark-submit). Fails when any
    table could not be maintained, after the others were, and logs what was done for each. An unknown
    namespace fails the task without retries."""

    template_fields = ("namespace",)
    ui_color = "#9fb4c7"

    def __init__(self, *, namespace: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.namespace = namespace
        self.hook: K2SparkConnectHook | K2SparkSubmitHook | None = None

    def execute(self, context: Any) -> dict[str, Any]:
        from k2.airflow.hooks.spark_connect import spark_job_hook
        from k2.lake.maintenance import MaintenanceReport

        if self.namespace not in NAMESPACES:  # e.g. a templated namespace from a run's parameters
            raise AirflowFailException(
                str(K2Error(f"namespace={self.namespace!r} is not one of K2's", f"use one of {', '.join(NAMESPACES)}."))
            )
        with tempfile.TemporaryDirectory(prefix="k2-job-") as tmp:
            report_file = Path(tmp) / "report.json"
            settings = load_settings()
            self.hook = spark_job_hook(
                settings,
                name=f"k2-maintenance-{self.namespace}",
                application=MAINTENANCE_APPLICATION,
                application_args=["--namespace", self.namespace, "--report", str(report_file)],
                nice=settings.maintenance.nice,
            )
            failure: AirflowException | None = None
            try:
                self.hook.submit()
            except AirflowException as exc:  # a job with one bad table still wrote its report
                failure = exc
            if not report_file.is_file():
                raise failure or AirflowException("the maintenance job wrote no report")
            report = MaintenanceReport.read(report_file)
        for line in report.lines():
            self.log.info("%s", line)
        if failure is not None:
            raise failure
        return report.to_dict()

    def on_kill(self) -> None:
        if self.hook is not None:
            self.hook.on_kill()
