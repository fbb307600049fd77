"""Bronze -> Silver -> Gold, hourly per data interval, gated by Great Expectations."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, CronDataIntervalTimetable, Param, task
from airflow.sdk.definitions.taskgroup import TaskGroup

from k2 import dag_ids
from k2.airflow.assets import GOLD_ASSETS, SILVER_ASSETS, bronze_asset
from k2.airflow.notifiers.alerts import K2AlertNotifier, batch_deadline
from k2.airflow.operators.gap_repair import GapRepairOperator
from k2.airflow.operators.medallion import MedallionOperator
from k2.airflow.sensors.settle import BronzeSettledSensor
from k2.medallion.interval import DATE_TIME_PATTERN
from k2.settings import load_settings

settings = load_settings()
spark_pool = settings.spark.airflow_pool  # bounds concurrent Spark jobs (K2_SPARK_POOL_SLOTS)
spark_timeout = timedelta(minutes=settings.batch.execution_timeout_min)  # a hung job frees the pool
repair_timeout = timedelta(minutes=settings.gaps_repair.execution_timeout_min)
# format: the trigger form's date-time picker; pattern: the check itself, wherever a run is created
# (jsonschema checks "format" only when rfc3339-validator is installed, which Airflow does not require)
date_time = {"type": ["null", "string"], "format": "date-time", "pattern": DATE_TIME_PATTERN}

DOC = """
Each hour, per exchange: wait until Bronze holds every record the stream ingested in the data
interval, parse and validate them into **silver.trades** (bad records to **silver.dead_letter**,
duplicates counted), then recompute the **gold.ohlcv_1m/5m/1h/1d** bars those trades fall into,
then (with K2_GAPS_REPAIR on; skipped otherwise) fetch the trades of every open gap in the trade ids
from the exchange's REST API and publish them to Kafka, so the next run closes the gap.
Intervals are Bronze ingestion time, so a record whose producer stamped it inside an hour already
processed is taken by the hour it arrived in. Each run also processes every earlier range its layer
has not covered (scheduler downtime, a paused DAG, a failed hour): **ops.medallion_ledger** records
what each layer did. Every step is idempotent: re-running or backfilling an interval gives the same
tables. Great Expectations gates each layer before it is written; a critical failure fails the task
and publishes nothing.

Backfill with Airflow (`airflow backfill create --dag-id k2_medallion --from-date ... --to-date ...`,
the REST API or the UI), or trigger with parameters `exchange`, `start`, `end` (RFC 3339 date-times,
e.g. 2026-11-20T13:00:00Z; at most K2_BATCH_MAX_MANUAL_INTERVAL_H apart). Wrong parameters fail the
run at once, without retries.
"""

with DAG(
    dag_id=dag_ids.MEDALLION,
    description="Bronze -> Silver -> Gold per hour, with Great Expectations gates",
    doc_md=DOC,
    # data intervals [hh:00, hh+1:00), each run after its hour has ended
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=2,
    deadline=batch_deadline(settings.batch.deadline_min),
    on_failure_callback=K2AlertNotifier("critical"),
    tags=["k2", "silver", "gold", "batch"],
    params={
        "exchange": Param(
            "all", type="string", enum=["all", *settings.exchanges], description="Exchange to process, or all"
        ),
        "start": Param(
            None,
            description="Manual runs: interval start, e.g. 2026-11-20T13:00:00Z (empty: the run's data interval)",
            **date_time,
        ),
        "end": Param(
            None,
            description="Manual runs: interval end, exclusive; at most "
            f"{settings.batch.max_manual_interval_h:g} h after start (K2_BATCH_MAX_MANUAL_INTERVAL_H)",
            **date_time,
        ),
        "catch_up": Param(
            True,
            type="boolean",
            description="Also process every earlier Bronze range not processed yet (false: exactly this interval)",
        ),
    },
    default_args={
        "owner": "k2",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        # downstream tasks first: with one Spark slot, an exchange's Gold runs right after its Silver
        # instead of after every exchange's Silver, so its bars are published one job sooner
        "weight_rule": "upstream",
    },
):

    @task(task_id="check_params")
    def check_params(params=None) -> str:
        from k2.airflow.intervals import validate_run_params

        return validate_run_params(params or {})

    checked = check_params()
    for exchange in settings.exchanges:
        with TaskGroup(group_id=exchange):
            wait = BronzeSettledSensor(
                task_id="wait_for_bronze", exchange=exchange, poke_interval=10, timeout=settings.batch.settle_timeout_s
            )
            # one Silver and one Gold task per exchange at a time: their idempotency relies on it
            silver = MedallionOperator(
                task_id="silver",
                layer="silver",
                exchange=exchange,
                max_active_tis_per_dag=1,
                pool=spark_pool,
                execution_timeout=spark_timeout,
                inlets=[bronze_asset(exchange)],
                outlets=SILVER_ASSETS,
            )
            gold = MedallionOperator(
                task_id="gold",
                layer="gold",
                exchange=exchange,
                max_active_tis_per_dag=1,
                pool=spark_pool,
                execution_timeout=spark_timeout,
                inlets=SILVER_ASSETS[:1],
                outlets=GOLD_ASSETS,
            )
            # no Spark: REST requests and Kafka produces, off (skipped) unless K2_GAPS_REPAIR is on
            repair = GapRepairOperator(task_id="repair_gaps", exchange=exchange, execution_timeout=repair_timeout)
            checked >> wait >> silver >> gold >> repair
