"""Where each part of a hybrid answer comes from: Silver/Gold (Iceberg, read with pyiceberg into
Arrow), the Bronze rows Silver has not processed (by the medallion ledger's coverage), and the Kafka
tail past the offsets the Bronze stream has committed (by its progress file)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from k2.lake.tables import SILVER_TRADES, bronze_table, gold_table
from k2.medallion.coverage import Range, merge
from k2.settings import Settings

FAR = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)
RECORD_COLUMNS = ("kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp", "ingested_at", "value")


def gaps(covered: list[Range]) -> list[Range]:
    """Ingestion-time ranges a layer has not covered (before its first range and after its last)."""
    out, cursor = [], dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    for start, end in merge(covered):
        if start > cursor:
            out.append((cursor, start))
        cursor = max(cursor, end)
    return [*out, (cursor, FAR)]


def in_ranges(moment: dt.datetime | None, ranges: list[Range]) -> bool:
    return moment is not None and any(start <= moment < end for start, end in ranges)


def _catalog(settings: Settings):
    from k2.lake.catalog import load_catalog

    return load_catalog(settings.lake)


def scan(settings: Settings, identifier: str, row_filter: Any, columns: tuple[str, ...] = ("*",)) -> pa.Table:
    return _catalog(settings).load_table(identifier).scan(row_filter=row_filter, selected_fields=columns).to_arrow()


def silver_trades(
    settings: Settings,
    exchanges: list[str],
    symbols: list[str] | None,
    start: dt.datetime,
    end: dt.datetime,
    extra: Any = None,
) -> pa.Table:
    from pyiceberg.expressions import And, GreaterThanOrEqual, In, LessThan, Or

    where = And(In("exchange", exchanges), GreaterThanOrEqual("event_time", start.isoformat()))
    where = And(where, LessThan("event_time", end.isoformat()))
    if symbols:
        where = And(where, Or(In("symbol", symbols), In("exchange_symbol", symbols)))
    if extra is not None:
        where = And(where, extra)
    return scan(settings, SILVER_TRADES.identifier, where)


def gold_bars(
    settings: Settings,
    interval: str,
    exchanges: list[str],
    symbols: list[str] | None,
    start: dt.datetime,
    end: dt.datetime,
) -> pa.Table:
    from pyiceberg.expressions import And, GreaterThanOrEqual, In, LessThan

    where = And(In("exchange", exchanges), GreaterThanOrEqual("bar_start", start.isoformat()))
    where = And(where, LessThan("bar_start", end.isoformat()))
    if symbols:
        where = And(where, In("symbol", symbols))
    return scan(settings, gold_table(interval).identifier, where)


def bronze_records(settings: Settings, exchange: str, since: Range, unprocessed: list[Range]) -> list[dict[str, Any]]:
    """Bronze rows with a Kafka timestamp in ``since`` whose ingestion Silver has not covered."""
    from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan

    where = And(
        GreaterThanOrEqual("kafka_timestamp", since[0].isoformat()), LessThan("kafka_timestamp", since[1].isoformat())
    )
    where = And(where, GreaterThanOrEqual("ingested_at", unprocessed[0][0].isoformat()))
    rows = scan(settings, bronze_table(exchange).identifier, where, RECORD_COLUMNS).to_pylist()
    return [r for r in rows if in_ranges(r["ingested_at"], unprocessed)]


@dataclass(frozen=True)
class Tail:
    records: list[dict[str, Any]]
    committed: dict[int, int]  # partition -> first offset not in Bronze (from the stream's progress)
    ends: dict[int, int]  # partition -> end offset when read


def kafka_tail(settings: Settings, exchange: str, timeout_s: float = 10.0) -> Tail:
    """Records past the Bronze stream's committed offsets, up to the end offsets at call time."""
    import time

    from confluent_kafka import Consumer, TopicPartition

    from k2.kafka.lag import committed_offsets
    from k2.streams.state import StreamPaths, read_json

    topic = settings.topic_for(exchange)
    committed = committed_offsets(read_json(StreamPaths.of(settings, exchange).progress) or {}, topic)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": f"k2-query-{exchange}",
            "enable.auto.commit": False,
            "log_level": 0,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=5).topics[topic].partitions
        starts, ends = {}, {}
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)
            starts[p], ends[p] = max(committed.get(p, low), low), high
        todo = {p for p in partitions if starts[p] < ends[p]}
        consumer.assign([TopicPartition(topic, p, starts[p]) for p in todo])
        records, deadline = [], time.monotonic() + timeout_s
        while todo and time.monotonic() < deadline:
            for msg in consumer.consume(10_000, timeout=0.2):
                if msg.error() or msg.partition() not in todo or msg.offset() >= ends[msg.partition()]:
                    continue
                ts = dt.datetime.fromtimestamp(msg.timestamp()[1] / 1000, dt.UTC)
                records.append(
                    dict(
                        zip(RECORD_COLUMNS, (topic, msg.partition(), msg.offset(), ts, None, msg.value()), strict=True)
                    )
                )
                if msg.offset() >= ends[msg.partition()] - 1:
                    todo.discard(msg.partition())
        if todo:
            from k2.errors import K2Error

            raise K2Error(
                f"the Kafka tail of {topic} was not read to its end within {timeout_s:.0f}s",
                "check that the broker answers (`k2 kafka status`), then run the query again.",
            )
        return Tail(records, committed, ends)
    finally:
        consumer.close()
