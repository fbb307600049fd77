"""Bronze stream supervisors: one DAG per exchange in K2_EXCHANGES, from one definition."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from k2 import dag_ids
from k2.airflow.operators.streams import BronzeStreamSupervisorOperator
from k2.settings import load_settings

DOC = """
Keeps the **{exchange}** Bronze stream (Kafka `{topic}` -> Iceberg `bronze.{exchange}_trades`)
running: starts it, restarts it with exponential back-off when it dies, kills and restarts it
when it stalls, and gives up with a critical alert after too many restarts in an hour.
Each run supervises for K2_STREAM_SUPERVISE_WINDOW_S; the next run follows at once. Pause this DAG to stop the
stream (it stops itself when its lease lapses); `k2 stream stop --exchange {exchange}` stops it explicitly.
Task logs show one status line per check: state, pid, last batch, lag, restarts.
"""

settings = load_settings()

for exchange in settings.exchanges:
    with DAG(
        dag_id=dag_ids.bronze_stream(exchange),
        description=f"Keeps the {exchange} Kafka -> Bronze stream running",
        doc_md=DOC.format(exchange=exchange, topic=settings.topic_for(exchange)),
        schedule="@continuous",
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,
        tags=["k2", "bronze", "streaming", exchange],
        default_args={
            "owner": "k2",
            "retries": 3,
            "retry_delay": timedelta(seconds=15),
            "retry_exponential_backoff": True,
        },
    ):
        BronzeStreamSupervisorOperator(
            task_id="supervise", exchange=exchange, window=timedelta(seconds=settings.streams.supervise_window_s)
        )
