"""Publishes each micro-batch's progress to the stream's state directory (read by Airflow) and its
end offsets to the stream's Kafka consumer group (k2.kafka.groups).

The listener is Java (``k2/bundle/jvm/stream-listener``, compiled by ``k2 jars``) and runs on the
driver's listener bus: a Python listener paid a py4j round trip per event and per field read, with
a class lookup scanning every jar each time, about 12% of a stream's samples at 200 msg/s (JFR).
The files it writes are those k2.streams.state describes, each replaced atomically:

``progress.json`` / ``progress.jsonl``: batch_id, query_id, run_id, timestamp (trigger start,
ISO-8601 UTC), completed_at (epoch s), rows, input_rows_per_s, processed_rows_per_s (null while
unknown), batch_duration_ms, duration_ms {phase: ms}, end_offsets and latest_offsets
{topic: {partition: offset}}.
``idle.json``: idle_at (epoch s), trigger_at (ISO-8601 UTC), query_id.
"""

from __future__ import annotations

from functools import reduce
from typing import TYPE_CHECKING

from k2.jvm import STREAM_LISTENER_CLASS
from k2.kafka.groups import bronze_group
from k2.settings import Settings
from k2.streams.state import PROGRESS_HISTORY, PROGRESS_LOG_MAX_BYTES, StreamPaths

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def add_progress_listener(spark: SparkSession, settings: Settings, paths: StreamPaths) -> None:
    """Register the JVM listener on the session's streams (before the query starts); the stream's
    spark.jars carry it (k2.spark.server_conf)."""
    listener_class = reduce(getattr, STREAM_LISTENER_CLASS.split("."), spark.sparkContext._jvm)
    listener = listener_class(
        str(paths.progress),
        str(paths.progress_log),
        str(paths.idle),
        PROGRESS_HISTORY,
        PROGRESS_LOG_MAX_BYTES,
        settings.kafka.bootstrap_servers,
        bronze_group(paths.exchange),
    )
    spark._jsparkSession.streams().addListener(listener)
