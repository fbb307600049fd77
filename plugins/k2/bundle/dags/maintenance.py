"""Iceberg table maintenance for every K2 table, daily, safe while the streams run."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, CronTriggerTimetable

from k2 import dag_ids
from k2.airflow.notifiers.alerts import K2AlertNotifier, batch_deadline
from k2.airflow.operators.housekeeping import HousekeepingOperator
from k2.airflow.operators.maintenance import IcebergMaintenanceOperator
from k2.housekeeping import HOUSEKEEPING_CHORES
from k2.lake.names import NAMESPACES
from k2.settings import load_settings

settings = load_settings()

DOC = f"""
Per namespace, on every table: **rewrite_data_files** (compact the streams' small files to
{settings.maintenance.target_file_mb} MB), **rewrite_manifests**, **expire_snapshots** (older than
{settings.maintenance.snapshot_retention_h:g} h, keeping the last {settings.maintenance.min_snapshots}) and
**remove_orphan_files** (older than {settings.maintenance.orphan_age_h:g} h). Commit conflicts with the
streams and the batch are retried; compaction never changes a row.

Housekeeping, alongside: K2's component logs rotated over {settings.maintenance.log_max_mb} MB
({settings.maintenance.log_keep} copies kept) and Airflow task logs deleted after
{settings.maintenance.log_retention_days:g} days; Great Expectations results and Data Docs pages after
{settings.maintenance.quality_retention_days:g} days; Airflow's metadata DB cleaned of rows older than
{settings.maintenance.airflow_db_retention_days:g} days. Retention: `K2_MAINTENANCE_*`.
"""

with DAG(
    dag_id=dag_ids.MAINTENANCE,
    description="Iceberg compaction, manifest rewrite, snapshot expiry and orphan removal on every K2 table",
    doc_md=DOC,
    # daily, off the hour so it does not meet the batch's start; no start date, so a newly unpaused DAG
    # (`k2 up`) waits for the next 03:30 instead of running at once beside the first batch run. Not
    # run_immediately=False: Airflow 3.3 reads it as "if within a tenth of the period" and runs at once
    # when unpaused before 05:54; a zero buffer is "never".
    schedule=CronTriggerTimetable("30 3 * * *", timezone="UTC", run_immediately=timedelta(0)),
    catchup=False,
    max_active_runs=1,
    deadline=batch_deadline(settings.maintenance.deadline_min),
    on_failure_callback=K2AlertNotifier("warning"),
    tags=["k2", "maintenance", "iceberg"],
    default_args={"owner": "k2", "retries": 2, "retry_delay": timedelta(minutes=5), "retry_exponential_backoff": True},
):
    previous = None
    for namespace in NAMESPACES:  # one after the other: each is a Spark job, and cores are few
        # all_done: a table that failed in one namespace does not hold back the others
        task = IcebergMaintenanceOperator(
            task_id=f"maintain_{namespace}",
            namespace=namespace,
            trigger_rule="all_done",
            pool=settings.maintenance.pool or settings.spark.airflow_pool,
            priority_weight=0,
            execution_timeout=timedelta(minutes=settings.maintenance.execution_timeout_min),
        )  # the hourly batch goes first
        if previous is not None:
            previous >> task
        previous = task
    for chore in HOUSEKEEPING_CHORES:  # no Spark: they run beside the compaction chain
        HousekeepingOperator(task_id=f"housekeeping_{chore}", chore=chore, priority_weight=0)
