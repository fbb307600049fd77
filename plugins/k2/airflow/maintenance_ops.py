"""Operator of the maintenance DAG: one namespace's Iceberg tables per task."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator

from k2.settings import PROJECT_ROOT, load_settings

MAINTENANCE_APPLICATION = PROJECT_ROOT / "spark_jobs" / "maintenance.py"


class IcebergMaintenanceOperator(BaseOperator):
    """Compacts data files, rewrites manifests, expires snapshots and removes orphan files on every
    table of ``namespace`` (``spark_jobs/maintenance.py`` through the Apache Spark provider). Fails
    when any table could not be maintained, after the others were."""

    template_fields = ("namespace",)
    ui_color = "#9fb4c7"

    def __init__(self, *, namespace: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.namespace = namespace

    def execute(self, context: Any) -> dict[str, Any]:
        from k2.airflow.hooks import submit_job

        report = submit_job(load_settings(), name=f"k2-maintenance-{self.namespace}",
                            application=MAINTENANCE_APPLICATION, args=["--namespace", self.namespace], log=self.log)
        for table in report["tables"]:
            self.log.info("%s: data files %s -> %s (rewrote %s into %s), manifests rewritten %s, snapshots "
                          "expired %s, orphans removed %s, conflicts retried %s, %ss%s", table["table"],
                          table["data_files_before"], table["data_files_after"], table["rewritten_files"],
                          table["added_files"], table["rewritten_manifests"], table["expired_snapshots"],
                          table["orphans_removed"], table["conflicts_retried"], table["duration_s"],
                          f", ERROR {table['error']}" if table["error"] else "")
        return report
