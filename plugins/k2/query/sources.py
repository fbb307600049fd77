"""Where each part of a hybrid answer comes from: Silver/Gold (Iceberg, read with pyiceberg into
Arrow), the Bronze rows Silver has not processed (by the medallion ledger's coverage), and the Kafka
tail past the offsets the Bronze stream has committed (by its progress file)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from k2.errors import K2Error
from k2.lake.tables import SILVER_TRADES, bronze_table, gold_table
from k2.medallion.coverage import Range, merge
from k2.settings import Settings

FAR = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)
# headers: a connection event (k2.feeds.events) is told from a trade message by its header
RECORD_COLUMNS = (
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
    "kafka_timestamp",
    "ingested_at",
    "value",
    "headers",
)


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
    from pyiceberg.exceptions import NoSuchTableError

    try:
        table = _catalog(settings).load_table(identifier)
    except NoSuchTableError:
        raise K2Error(
            f"the lake has no table {identifier}", "create K2's tables with `k2 lake init` (or `k2 up`)."
        ) from None
    return table.scan(row_filter=row_filter, selected_fields=columns).to_arrow()


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


def bronze_batches(
    settings: Settings, exchange: str, since: Range, unprocessed: list[Range], keys: KeyFilter | None = None
) -> Iterator[list[dict[str, Any]]]:
    """Bronze rows with a Kafka timestamp in ``since`` whose ingestion Silver has not covered (and
    that ``keys`` lets through), batch by batch (memory stays bounded however much Silver has not
    processed yet), filtered in Arrow before any becomes a Python object."""
    import pyarrow.compute as pc
    from pyiceberg.exceptions import NoSuchTableError
    from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan

    where = And(
        GreaterThanOrEqual("kafka_timestamp", since[0].isoformat()), LessThan("kafka_timestamp", since[1].isoformat())
    )
    where = And(where, GreaterThanOrEqual("ingested_at", unprocessed[0][0].isoformat()))
    identifier = bronze_table(exchange).identifier
    try:
        table = _catalog(settings).load_table(identifier)
    except NoSuchTableError:
        raise K2Error(
            f"the lake has no table {identifier}", "create K2's tables with `k2 lake init` (or `k2 up`)."
        ) from None
    reader = table.scan(row_filter=where, selected_fields=(*RECORD_COLUMNS, "key")).to_arrow_batch_reader()
    for batch in reader:
        mask = pc.or_(*[_between(batch["ingested_at"], s, e) for s, e in unprocessed]) if len(unprocessed) > 1 else None
        if keys is not None:
            chosen = keys.mask(batch["key"])
            mask = chosen if mask is None else pc.and_(mask, chosen)
        if mask is not None:
            batch = batch.filter(mask)
        yield batch.select(list(RECORD_COLUMNS)).to_pylist()


def _between(column, start: dt.datetime, end: dt.datetime):
    import pyarrow.compute as pc

    return pc.and_(
        pc.greater_equal(column, pa.scalar(start, column.type)), pc.less(column, pa.scalar(end, column.type))
    )


@dataclass(frozen=True)
class KeyFilter:
    """Records a symbol query needs, by Kafka key: K2's feeds key every record by the exchange symbol
    its trades carry (k2.feeds), so a record keyed by another known symbol holds none of the wanted
    trades; a record with any other key (empty, unknown) is read all the same."""

    wanted: frozenset[bytes]
    known: frozenset[bytes]

    def mask(self, column):
        import pyarrow.compute as pc

        wanted = pc.is_in(column, value_set=pa.array(sorted(self.wanted), pa.binary()))
        unknown = pc.invert(pc.is_in(column, value_set=pa.array(sorted(self.known), pa.binary())))
        return pc.fill_null(pc.or_(wanted, unknown), True)

    def admits(self, key: bytes | None) -> bool:
        return key is None or key in self.wanted or key not in self.known


@dataclass(frozen=True)
class Tail:
    records: list[dict[str, Any]]
    committed: dict[int, int]  # partition -> first offset not in Bronze (from the stream's progress)
    ends: dict[int, int]  # partition -> end offset when read


def kafka_tail(settings: Settings, exchange: str, keys: KeyFilter | None = None) -> Tail:
    """Records past the Bronze stream's committed offsets, up to the end offsets at call time."""
    import time

    from confluent_kafka import Consumer, KafkaException, TopicPartition

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
        try:
            partitions = consumer.list_topics(topic, timeout=5).topics[topic].partitions
        except KafkaException as exc:
            raise K2Error(
                f"cannot read topic {topic} from Kafka at {settings.kafka.bootstrap_servers}: {exc}",
                "start the broker and topics (`k2 kafka start`, `k2 kafka topics`, or `k2 up`), then query again.",
            ) from None
        starts, ends = {}, {}
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)
            starts[p], ends[p] = max(committed.get(p, low), low), high
        todo = {p for p in partitions if starts[p] < ends[p]}
        consumer.assign([TopicPartition(topic, p, starts[p]) for p in todo])
        timeout_s = settings.batch.query_tail_timeout_s
        records, deadline = [], time.monotonic() + timeout_s
        while todo and time.monotonic() < deadline:
            for msg in consumer.consume(10_000, timeout=0.2):
                if msg.error() or msg.partition() not in todo or msg.offset() >= ends[msg.partition()]:
                    continue
                if msg.offset() >= ends[msg.partition()] - 1:
                    todo.discard(msg.partition())
                if keys is not None and not keys.admits(msg.key()):
                    continue
                ts = dt.datetime.fromtimestamp(msg.timestamp()[1] / 1000, dt.UTC)
                records.append(
                    dict(
                        zip(
                            RECORD_COLUMNS,
                            (topic, msg.partition(), msg.offset(), ts, None, msg.value(), msg.headers()),
                            strict=True,
                        )
                    )
                )
        if todo:
            raise K2Error(
                f"the Kafka tail of {topic} was not read to its end within {timeout_s:.0f}s",
                "check that the broker answers (`k2 kafka status`) and the stream runs (`k2 stream status`); "
                "a long tail needs a larger K2_QUERY_TAIL_TIMEOUT_S.",
            )
        return Tail(records, committed, ends)
    finally:
        consumer.close()
