"""Where each part of a hybrid answer comes from: Silver/Gold (Iceberg, read with pyiceberg into
Arrow), the Bronze rows Silver has not processed (by the medallion ledger's coverage), and the Kafka
tail past the offsets the Bronze stream has committed (by its progress file)."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from k2.errors import K2Error
from k2.feeds.events import CONNECTION_KIND, KIND_HEADER
from k2.lake.current import derived, tables_of
from k2.lake.tables import SILVER_TRADES, bronze_table, gold_table
from k2.medallion.coverage import Range, merge
from k2.settings import Settings

FAR = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)
TIME = pa.timestamp("us", tz="UTC")
HEADERS = pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))
RECORD_SCHEMA = pa.schema(
    [
        ("kafka_topic", pa.string()),
        ("kafka_partition", pa.int32()),
        ("kafka_offset", pa.int64()),
        ("kafka_timestamp", TIME),
        ("ingested_at", TIME),
        ("value", pa.binary()),
        ("headers", HEADERS),  # a connection event (k2.feeds.events) is told from a trade message by its header
    ]
)
RECORD_COLUMNS = tuple(RECORD_SCHEMA.names)


def gaps(covered: list[Range]) -> list[Range]:
    """Ingestion-time ranges a layer has not covered (before its first range and after its last)."""
    out, cursor = [], dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    for start, end in merge(covered):
        if start > cursor:
            out.append((cursor, start))
        cursor = max(cursor, end)
    return [*out, (cursor, FAR)]


def _table(settings: Settings, identifier: str):
    from pyiceberg.exceptions import NoSuchTableError

    try:
        return tables_of(settings.lake).load(identifier)
    except NoSuchTableError:
        raise K2Error(
            f"the lake has no table {identifier}", "create K2's tables with `k2 lake init` (or `k2 up`)."
        ) from None


def scan(settings: Settings, identifier: str, row_filter: Any, columns: tuple[str, ...] = ("*",)) -> pa.Table:
    return _table(settings, identifier).scan(row_filter=row_filter, selected_fields=columns).to_arrow()


def latest_event_time(table: Any, exchanges: list[str], since: dt.datetime) -> dt.datetime | None:
    """An upper bound on the event times of Silver's rows (its ``event_time`` and ``exchange``
    columns) of ``exchanges`` that may lie at or after ``since`` (None: no such row), from the data
    files' column bounds: reading the manifests of ``since``'s day once per snapshot, not at every
    query. A query at the live edge, past what the batch has written, then plans no scan at all (an
    empty plan of a few manifests cost 6 ms idle and about 37 ms beside the streams)."""
    day = since.replace(hour=0, minute=0, second=0, microsecond=0)
    key = ("latest_event_time", tuple(sorted(exchanges)), day)
    return derived(table, key, lambda t: _latest_event_time(t, exchanges, day))


def _latest_event_time(table: Any, exchanges: list[str], day: dt.datetime) -> dt.datetime | None:
    from pyiceberg.conversions import from_bytes
    from pyiceberg.expressions import And, GreaterThanOrEqual, In

    field = table.schema().find_field("event_time")
    where = And(In("exchange", exchanges), GreaterThanOrEqual("event_time", day.isoformat()))
    latest: dt.datetime | None = None
    for task in table.scan(row_filter=where).plan_files():
        bound = (task.file.upper_bounds or {}).get(field.field_id)
        if bound is None:  # a file without bounds may hold anything
            return FAR
        moment = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=from_bytes(field.field_type, bound))
        latest = moment if latest is None else max(latest, moment)
    return latest


def silver_trades(
    settings: Settings,
    exchanges: list[str],
    symbols: list[str] | None,
    start: dt.datetime,
    end: dt.datetime,
    extra: Any = None,
    columns: tuple[str, ...] = ("*",),
) -> pa.Table:
    from pyiceberg.expressions import And, GreaterThanOrEqual, In, LessThan, Or
    from pyiceberg.io.pyarrow import schema_to_pyarrow

    table = _table(settings, SILVER_TRADES.identifier)
    latest = latest_event_time(table, exchanges, start)
    if latest is None or latest < start:  # the usual case at the live edge: the batch has not reached it
        # the schema a scan's table has; an empty scan still reads the manifest list
        projected = table.scan(selected_fields=columns).projection()
        return schema_to_pyarrow(projected, include_field_ids=False).empty_table()
    where = And(In("exchange", exchanges), GreaterThanOrEqual("event_time", start.isoformat()))
    where = And(where, LessThan("event_time", end.isoformat()))
    if symbols:
        where = And(where, Or(In("symbol", symbols), In("exchange_symbol", symbols)))
    if extra is not None:
        where = And(where, extra)
    return table.scan(row_filter=where, selected_fields=columns).to_arrow()


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


def sql_time(moment: dt.datetime) -> str:
    return f"TIMESTAMPTZ '{moment.isoformat()}'"


def bronze_relation(
    con, settings: Settings, exchange: str, since: Range, unprocessed: list[Range], keys: KeyFilter | None = None
) -> str:
    """SQL (a parenthesised query over ``con``) for the Bronze records with a Kafka timestamp in
    ``since`` whose ingestion Silver has not covered, that ``keys`` lets through. Iceberg plans the
    scan (its partitions and each data file's column bounds prune the files outside the times);
    DuckDB reads the data files left, its filters pushed into their row groups. A table with delete
    files or on object storage is read through pyiceberg into Arrow instead."""
    from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan

    where = And(
        GreaterThanOrEqual("kafka_timestamp", since[0].isoformat()), LessThan("kafka_timestamp", since[1].isoformat())
    )
    where = And(where, GreaterThanOrEqual("ingested_at", unprocessed[0][0].isoformat()))
    table = _table(settings, bronze_table(exchange).identifier)
    scan = table.scan(row_filter=where, selected_fields=(*RECORD_COLUMNS, "key"))
    tasks = list(scan.plan_files())
    ingested = " OR ".join(
        f"(ingested_at >= {sql_time(start)} AND ingested_at < {sql_time(end)})" for start, end in unprocessed
    )
    predicate = f"kafka_timestamp >= {sql_time(since[0])} AND kafka_timestamp < {sql_time(since[1])} AND ({ingested})"
    if keys is not None:
        predicate += f" AND {keys.sql('key')}"
    columns = ", ".join(RECORD_COLUMNS)
    if tasks and all(not t.delete_files and _local(t.file.file_path) for t in tasks):
        files = ", ".join("'" + _local(t.file.file_path).replace("'", "''") + "'" for t in tasks)
        return f"(SELECT {columns} FROM read_parquet([{files}]) WHERE {predicate})"
    name = f"_bronze_{exchange}"
    empty = RECORD_SCHEMA.append(pa.field("key", pa.binary())).empty_table()
    con.register(name, scan.to_arrow_batch_reader() if tasks else empty)
    return f"(SELECT {columns} FROM {name} WHERE {predicate})"


def _local(path: str) -> str | None:
    """A data file's local path, or None when it is on object storage."""
    if path.startswith("file://"):
        return path.removeprefix("file://")
    if path.startswith("file:"):
        return path.removeprefix("file:")
    return path if path.startswith("/") else None


@dataclass(frozen=True)
class KeyFilter:
    """Records a symbol query needs, by Kafka key: K2's feeds key every record by the exchange symbol
    its trades carry (k2.feeds), so a record keyed by another known symbol holds none of the wanted
    trades; a record with any other key (empty, unknown) is read all the same."""

    wanted: frozenset[bytes]
    known: frozenset[bytes]

    def sql(self, column: str) -> str:
        """The same test in SQL (symbols are ASCII)."""

        def blobs(keys: frozenset[bytes]) -> str:
            return ", ".join(f"'{k.decode()}'::BLOB" for k in sorted(keys)) or "NULL"

        return f"({column} IS NULL OR {column} IN ({blobs(self.wanted)}) OR {column} NOT IN ({blobs(self.known)}))"

    def admits(self, key: bytes | None) -> bool:
        return key is None or key in self.wanted or key not in self.known


class TailUnreadable(K2Error):
    """Kafka did not give the records past Bronze's last commit (the broker down, the topic missing,
    the tail not read in time): a query answers without them (``k2.query.hybrid``)."""


@dataclass(frozen=True)
class Tail:
    records: list[dict[str, Any]]
    committed: dict[int, int]  # partition -> first offset not in Bronze (from the stream's progress)
    ends: dict[int, int]  # partition -> end offset when read


UNREACHABLE_S = 5.0
KAFKA_FIX = "start the broker and topics (`k2 kafka start`, `k2 kafka topics`, or `k2 up`), then query again."


@dataclass
class Outage:
    """Kafka not answering, remembered for ``UNREACHABLE_S``: a query that finds the broker down waits
    for it once, not once per exchange (each wait is a request timeout of several seconds)."""

    servers: str
    since: float = float("-inf")  # time.monotonic() of the last failure
    why: str = ""

    def check(self, topic: str) -> None:
        """Raises ``TailUnreadable`` if Kafka did not answer a moment ago."""
        if time.monotonic() - self.since < UNREACHABLE_S:
            raise self.error(topic)

    def record(self, topic: str, exc: Exception) -> TailUnreadable:
        self.since, self.why = time.monotonic(), str(exc)
        return self.error(topic)

    def error(self, topic: str) -> TailUnreadable:
        return TailUnreadable(f"cannot read topic {topic} from Kafka at {self.servers}: {self.why}", KAFKA_FIX)


_outages: dict[str, Outage] = {}


def outage(servers: str) -> Outage:
    """This process's record of Kafka at ``servers`` not answering."""
    return _outages.setdefault(servers, Outage(servers))


def kafka_tail(settings: Settings, exchange: str, keys: KeyFilter | None = None) -> Tail:
    """Records past the Bronze stream's committed offsets, up to the end offsets at call time.
    Raises ``TailUnreadable`` when Kafka does not give them."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    from k2.kafka.lag import committed_offsets
    from k2.streams.control import read_doc

    topic, down = settings.topic_for(exchange), outage(settings.kafka.bootstrap_servers)
    down.check(topic)
    committed = committed_offsets(read_doc(settings, exchange, "progress") or {}, topic)
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
            starts, ends = {}, {}
            for p in partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)
                starts[p], ends[p] = max(committed.get(p, low), low), high
        except KafkaException as exc:
            raise down.record(topic, exc) from None
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
                            (topic, msg.partition(), msg.offset(), ts, None, msg.value(), _headers(msg.headers())),
                            strict=True,
                        )
                    )
                )
        if todo:
            raise TailUnreadable(
                f"the Kafka tail of {topic} was not read to its end within {timeout_s:.0f}s",
                "check that the broker answers (`k2 kafka status`) and the stream runs (`k2 stream status`); "
                "a long tail needs a larger K2_QUERY_TAIL_TIMEOUT_S.",
            )
        return Tail(records, committed, ends)
    finally:
        consumer.close()


def from_messages(topic: str, messages: list) -> pa.Table:
    """Kafka messages (``confluent_kafka.Message``, none an error) as RECORD_SCHEMA rows. Of their
    headers only the connection-event mark is kept: it is the one header judging reads
    (``k2.feeds.events``), and turning every record's headers into Arrow costs more than judging it."""
    import numpy as np

    mark = (KIND_HEADER, CONNECTION_KIND)
    marked = np.fromiter((mark in (m.headers() or ()) for m in messages), bool, len(messages))
    ends = np.concatenate([[0], np.cumsum(marked)]).astype(np.int32)
    count = int(ends[-1])
    marks = pa.StructArray.from_arrays(
        [pa.array([KIND_HEADER] * count, pa.string()), pa.array([CONNECTION_KIND] * count, pa.binary())],
        fields=list(HEADERS.value_type),
    )
    stamps = pa.array([m.timestamp()[1] for m in messages], pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
    columns = {
        "kafka_topic": pa.array([topic] * len(messages), pa.string()),
        "kafka_partition": pa.array([m.partition() for m in messages], pa.int32()),
        "kafka_offset": pa.array([m.offset() for m in messages], pa.int64()),
        "kafka_timestamp": stamps.cast(TIME),
        "ingested_at": pa.nulls(len(messages), TIME),
        "value": pa.array([m.value() for m in messages], pa.binary()),
        "headers": pa.ListArray.from_arrays(pa.array(ends), marks, type=HEADERS),
    }
    return pa.table(columns, schema=RECORD_SCHEMA)


def _headers(headers: list[tuple[str, bytes]] | None) -> list[dict[str, Any]]:
    """Kafka's header tuples in Bronze's shape (a list of key/value structs)."""
    return [{"key": key, "value": value} for key, value in headers or ()]
