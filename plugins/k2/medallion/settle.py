"""Is Bronze complete for an interval? Only then may Silver read it.

Bronze holds every record of [.., end) once, for each partition of the exchange's topic, the
stream has committed past the first offset whose Kafka timestamp is >= end (or past the end of
the partition when no such record exists yet). Kafka answers the first part
(``offsets_for_times``), the stream's progress file the second.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from k2.settings import Settings
from k2.streams.state import StreamPaths, read_json


@dataclass(frozen=True)
class Settlement:
    settled: bool
    missing: int  # records before `end` that Bronze does not hold yet (-1: unknown)
    detail: str


def bronze_settlement(settings: Settings, exchange: str, end: dt.datetime, timeout_s: float = 10.0) -> Settlement:
    from confluent_kafka import KafkaException, TopicPartition

    from k2.kafka.lag import committed_offsets, offsets_consumer

    topic = settings.topic_for(exchange)
    progress = read_json(StreamPaths.of(settings, exchange).progress) or {}
    committed = committed_offsets(progress, topic)
    consumer = offsets_consumer(settings.kafka, f"k2-settle-{exchange}")
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if meta is None or meta.error is not None:
            return Settlement(False, -1, f"topic {topic} is not available: {getattr(meta, 'error', 'missing')}")
        end_ms = int(end.timestamp() * 1000)
        found = consumer.offsets_for_times(
            [TopicPartition(topic, p, end_ms) for p in meta.partitions], timeout=timeout_s
        )
        missing = 0
        for tp in found:
            need = (
                tp.offset
                if tp.offset >= 0
                else consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=timeout_s)[1]
            )
            missing += max(0, need - committed.get(tp.partition, 0))
    except KafkaException as exc:
        return Settlement(False, -1, f"Kafka at {settings.kafka.bootstrap_servers} did not answer: {exc}")
    finally:
        consumer.close()
    if missing:
        return Settlement(
            False,
            missing,
            f"Bronze {exchange} still lacks {missing} records from before "
            f"{end.isoformat()} (stream batch {progress.get('batch_id')})",
        )
    return Settlement(True, 0, f"Bronze {exchange} holds every record from before {end.isoformat()}")


def bronze_rows_at_most(settings: Settings, exchange: str, start: dt.datetime, end: dt.datetime) -> int:
    """An upper bound of Bronze rows with a Kafka timestamp in [start, end), from Iceberg metadata
    alone (partitions and column bounds prune the data files): 0 means the interval is empty."""
    from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan

    from k2.lake.catalog import load_catalog
    from k2.lake.tables import bronze_table

    table = load_catalog(settings.lake).load_table(bronze_table(exchange).identifier)
    scan = table.scan(
        row_filter=And(
            GreaterThanOrEqual("kafka_timestamp", start.isoformat()), LessThan("kafka_timestamp", end.isoformat())
        )
    )
    return sum(task.file.record_count for task in scan.plan_files())
