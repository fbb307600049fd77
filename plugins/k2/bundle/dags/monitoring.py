"""Stream monitoring, every minute: latency, lag, freshness, incidents and alerts."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from k2 import dag_ids
from k2.airflow.operators.monitoring import StreamMonitorOperator

DOC = """
Every minute, per exchange: ingest latency p50/p95/p99 (Kafka timestamp and exchange event time to
the Iceberg commit), consumer lag in records and seconds, Bronze freshness, throughput, stream
restarts and the dead-letter ratio. Figures go to **ops.stream_metrics** and to the Prometheus
textfile `K2_HOME/monitoring/k2.prom`. Thresholds (defaults from the ADR: p99 above 10 s warns,
above 30 s is critical) can be changed with the Airflow Variable `k2_alert_thresholds` (JSON, see
`k2 thresholds`). One alert per incident, one on escalation, one when resolved; incident history
in **ops.alert_events**.
"""

with DAG(
    dag_id=dag_ids.MONITORING,
    description="Latency, lag and freshness of the Bronze streams; threshold alerts",
    doc_md=DOC,
    schedule="* * * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=5),
    tags=["k2", "monitoring", "ops"],
    default_args={
        "owner": "k2",
        "retries": 1,
        "retry_delay": timedelta(seconds=10),
        "execution_timeout": timedelta(minutes=4),
    },
):
    StreamMonitorOperator(task_id="measure_and_alert")
