"""Bronze stream supervisors: one DAG per exchange in K2_EXCHANGES, from one definition."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from k2 import dag_ids
from k2.airflow.operators.streams import BronzeStreamSupervisorOperator
from k2.settings import load_settings

DOC = """
Keeps the **{exchange}** Bronze stream (Kafka `{topic}` -> Iceberg `bronze.{exchange}_trades`)
running. Every {every:g} s (K2_STREAM_CHECK_INTERVAL_S) one short run checks it and exits: it
starts the stream, restarts it with exponential back-off when it died, kills and restarts it when
it stalls, and gives up with a critical alert after too many restarts in an hour (runs then fail
until `k2 stream start --exchange {exchange}`). The stream is a detached Spark job that runs between
checks. Pause this DAG to stop the stream (it stops itself when its lease lapses);
`k2 stream stop --exchange {exchange}` stops it at once. Each run logs one status line: state, pid,
last batch, lag, restarts, action and reason.
"""

settings = load_settings()
every = timedelta(seconds=settings.streams.check_interval_s)

for exchange in settings.exchanges:
    with DAG(
        dag_id=dag_ids.bronze_stream(exchange),
        description=f"Keeps the {exchange} Kafka -> Bronze stream running",
        doc_md=DOC.format(exchange=exchange, topic=settings.topic_for(exchange), every=every.total_seconds()),
        schedule=every,
        start_date=datetime(2026, 1, 1),
        catchup=False,  # after downtime one check, not one per missed interval
        max_active_runs=1,
        tags=["k2", "bronze", "streaming", exchange],
        # a check is a few seconds of work: a hung one must not hold back the next
        default_args={"owner": "k2", "retries": 1, "retry_delay": timedelta(seconds=5)},
    ):
        BronzeStreamSupervisorOperator(
            task_id="reconcile", exchange=exchange, execution_timeout=max(timedelta(minutes=2), 4 * every)
        )
