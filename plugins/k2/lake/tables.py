"""Every K2 table, defined once: schema, partitioning, properties.

Tables are created through pyiceberg (no JVM needed) and written by Spark, which resolves them by
name in the same catalog. Namespaces follow the layers: ``bronze``, ``silver``, ``gold`` (and
``ops`` for operations data).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import DayTransform, IdentityTransform, MonthTransform, Transform, YearTransform
from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DecimalType,
    DoubleType,
    IcebergType,
    IntegerType,
    ListType,
    LongType,
    NestedField,
    StringType,
    StructType,
    TimestamptzType,
)

from k2.errors import K2Error
from k2.lake.appends import APPENDED_OFTEN
from k2.lake.names import (
    CONNECTION_EVENTS_ID,
    DEAD_LETTER_ID,
    GOLD_INTERVAL_NAMES,
    MONEY_PRECISION,
    MONEY_SCALE,
    SILVER_TRADES_ID,
    TRADE_GAPS_ID,
    bronze_id,
    gold_id,
)
from k2.log import get_logger
from k2.settings import Settings

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

log = get_logger(__name__)

MONEY = DecimalType(MONEY_PRECISION, MONEY_SCALE)

TABLE_PROPERTIES = {
    "format-version": "2",
    "write.parquet.compression-codec": "zstd",
    # the streams, batch jobs and maintenance commit concurrently: retry instead of failing
    "commit.retry.num-retries": "20",
    "commit.retry.min-wait-ms": "100",
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "100",
}

GOLD_INTERVALS: dict[str, type[Transform]] = dict(
    zip(GOLD_INTERVAL_NAMES, (DayTransform, DayTransform, MonthTransform, YearTransform), strict=True)
)


def _split(identifier: str) -> tuple[str, str]:
    namespace, name = identifier.split(".", 1)
    return namespace, name


@dataclass(frozen=True)
class Column:
    name: str
    type: IcebergType
    required: bool = False
    doc: str = ""


@dataclass(frozen=True)
class TableSpec:
    namespace: str
    name: str
    columns: tuple[Column, ...]
    partitioning: tuple[tuple[str, type[Transform]], ...] = ()
    identifier_columns: tuple[str, ...] = ()
    doc: str = ""
    properties: dict[str, str] = field(default_factory=lambda: dict(TABLE_PROPERTIES))

    @property
    def identifier(self) -> str:
        return f"{self.namespace}.{self.name}"

    def schema(self) -> Schema:
        ids = iter(range(1, 10_000))
        nested = []
        for col in self.columns:
            field_id = next(ids)
            nested.append(NestedField(field_id, col.name, _renumber(col.type, ids), col.required, col.doc))
        by_name = {f.name: f.field_id for f in nested}
        return Schema(*nested, identifier_field_ids=[by_name[c] for c in self.identifier_columns])

    def partition_spec(self, schema: Schema) -> PartitionSpec:
        parts = []
        for i, (column, transform) in enumerate(self.partitioning):
            source = schema.find_field(column).field_id
            suffix = (
                "" if transform is IdentityTransform else "_" + transform.__name__.removesuffix("Transform").lower()
            )
            parts.append(PartitionField(source, 1000 + i, transform(), f"{column}{suffix}"))
        return PartitionSpec(*parts)


def _renumber(kind: IcebergType, ids) -> IcebergType:
    """Fresh field ids for nested types (pyiceberg reassigns them again on create)."""
    if isinstance(kind, ListType):
        return ListType(next(ids), _renumber(kind.element_type, ids), kind.element_required)
    if isinstance(kind, StructType):
        return StructType(
            *[NestedField(next(ids), f.name, _renumber(f.field_type, ids), f.required, f.doc) for f in kind.fields]
        )
    return kind


KAFKA_COORDINATES = (
    Column("kafka_topic", StringType(), True, "Source topic"),
    Column("kafka_partition", IntegerType(), True, "Source partition"),
    Column("kafka_offset", LongType(), True, "Offset in the source partition"),
    Column(
        "kafka_timestamp", TimestamptzType(), True, "Kafka record timestamp: the producer's CreateTime, not trusted"
    ),
)


def bronze_table(exchange: str) -> TableSpec:
    """Raw Kafka records of one exchange, exactly as published, plus where and when they came from."""
    return TableSpec(
        *_split(bronze_id(exchange)),
        (
            *KAFKA_COORDINATES,
            Column("kafka_timestamp_type", IntegerType(), False, "0 = create time, 1 = log append time"),
            Column("key", BinaryType(), False, "Record key (the exchange symbol)"),
            Column("value", BinaryType(), False, "Raw exchange payload, unparsed"),
            Column(
                "headers",
                ListType(
                    0,
                    StructType(
                        NestedField(0, "key", StringType(), False), NestedField(0, "value", BinaryType(), False)
                    ),
                    False,
                ),
                False,
                "Record headers in order (exchange, format version, received-at)",
            ),
            Column(
                "ingested_at",
                TimestamptzType(),
                True,
                "The Bronze micro-batch's time: only grows, so batch ranges select on it (k2.medallion.coverage)",
            ),
        ),
        partitioning=(("kafka_timestamp", DayTransform),),
        identifier_columns=("kafka_topic", "kafka_partition", "kafka_offset"),
        doc=f"Bronze: raw {exchange} trade messages from Kafka, one row per record",
    )


SILVER_TRADES = TableSpec(
    *_split(SILVER_TRADES_ID),
    (
        Column("exchange", StringType(), True),
        Column("symbol", StringType(), True, "Normalised symbol, BASE-QUOTE (e.g. BTC-USDT)"),
        Column("exchange_symbol", StringType(), True, "Symbol as the exchange spells it"),
        Column("trade_id", StringType(), True, "Exchange trade id (unique per exchange and symbol)"),
        Column("event_time", TimestamptzType(), True, "Trade time at the exchange, UTC, microseconds"),
        Column("price", MONEY, True),
        Column("quantity", MONEY, True, "Base-asset quantity"),
        Column("quote_amount", MONEY, True, "price * quantity"),
        Column("taker_side", StringType(), True, "buy or sell: the side of the aggressor"),
        *KAFKA_COORDINATES,
        Column("bronze_ingested_at", TimestamptzType(), True),
        Column("processed_at", TimestamptzType(), True, "When the Silver job wrote the row"),
    ),
    partitioning=(("exchange", IdentityTransform), ("event_time", DayTransform)),
    identifier_columns=("exchange", "symbol", "trade_id"),
    doc="Silver: unified, typed, de-duplicated trades of all exchanges",
)

DEAD_LETTER = TableSpec(
    *_split(DEAD_LETTER_ID),
    (
        Column("exchange", StringType(), True),
        *KAFKA_COORDINATES,
        Column("item_index", IntegerType(), True, "Index of the trade in a batch message; -1: whole message"),
        Column("reason", StringType(), True, "Machine-readable reason code"),
        Column("detail", StringType(), False, "Human-readable explanation"),
        Column("raw_value", BinaryType(), False, "The raw payload as Bronze holds it"),
        Column("bronze_ingested_at", TimestamptzType(), True),
        Column("detected_at", TimestamptzType(), True),
    ),
    partitioning=(("exchange", IdentityTransform), ("kafka_timestamp", DayTransform)),
    identifier_columns=("kafka_topic", "kafka_partition", "kafka_offset", "item_index"),
    doc="Silver dead letters: Bronze records or trades that could not become Silver trades, with why",
)


def gold_table(interval: str) -> TableSpec:
    if interval not in GOLD_INTERVALS:
        raise K2Error(f"unknown OHLCV interval {interval!r}", f"use one of {', '.join(GOLD_INTERVALS)}.")
    return TableSpec(
        *_split(gold_id(interval)),
        (
            Column("exchange", StringType(), True),
            Column("symbol", StringType(), True),
            Column("bar_start", TimestamptzType(), True, "Inclusive start of the bar, UTC"),
            Column("bar_end", TimestamptzType(), True, "Exclusive end of the bar, UTC"),
            Column("open", MONEY, True, "Price of the first trade (event time, then trade id)"),
            Column("high", MONEY, True),
            Column("low", MONEY, True),
            Column("close", MONEY, True, "Price of the last trade (event time, then trade id)"),
            Column("volume_base", MONEY, True),
            Column("volume_quote", MONEY, True),
            Column("vwap", MONEY, True, "volume_quote / volume_base"),
            Column("trade_count", LongType(), True),
            Column("taker_buy_base", MONEY, True),
            Column("taker_sell_base", MONEY, True),
            Column("computed_at", TimestamptzType(), True),
            # added after the first release: optional, so catalogs created before evolve (ensure_tables)
            Column("first_trade_id", StringType(), False, "Lowest trade id of the bar (numeric order for numeric ids)"),
            Column("last_trade_id", StringType(), False, "Highest trade id of the bar"),
            Column(
                "complete",
                BooleanType(),
                False,
                "The bar's trade ids are contiguous (no id between first and last is missing); "
                "null when the ids are not integers",
            ),
        ),
        partitioning=(("exchange", IdentityTransform), ("bar_start", GOLD_INTERVALS[interval])),
        identifier_columns=("exchange", "symbol", "bar_start"),
        doc=f"Gold: {interval} OHLCV bars per exchange and symbol",
    )


def _metric(name: str, doc: str) -> Column:
    return Column(name, DoubleType(), False, doc)


STREAM_METRICS = TableSpec(
    "ops",
    "stream_metrics",
    (
        Column("measured_at", TimestamptzType(), True, "When the monitoring run measured"),
        Column("exchange", StringType(), True),
        Column("stream_state", StringType(), True, "running / starting / down / stopped / given_up"),
        _metric("window_s", "Window of the percentiles and throughput"),
        Column("rows_committed", LongType(), True, "Rows Bronze committed in the window"),
        _metric("kafka_latency_p50_s", "Kafka timestamp -> Iceberg commit, rows committed in the window"),
        _metric("kafka_latency_p95_s", ""),
        _metric("kafka_latency_p99_s", ""),
        _metric("event_latency_p50_s", "Exchange event time -> Iceberg commit (sampled rows)"),
        _metric("event_latency_p95_s", ""),
        _metric("event_latency_p99_s", ""),
        _metric(
            "latency_p99_s",
            "Alerting latency: the larger of kafka_latency_p99_s and lag_s, so a stream "
            "that stopped committing shows its waiting records' age",
        ),
        Column("lag_messages", LongType(), False, "Kafka end offsets minus the stream's committed offsets"),
        _metric("lag_s", "Age of the oldest record the stream has not committed"),
        _metric("freshness_s", "Now minus the newest Bronze commit"),
        _metric("throughput_rows_per_s", "Rows committed per second over the window"),
        Column("restarts_1h", IntegerType(), False, "Supervisor restarts in the last hour"),
        _metric("dead_letter_ratio", "Dead letters / (Silver trades + dead letters) of the last processed hour"),
        Column("kafka_committed", LongType(), False, "Kafka records the stream committed"),
        Column("bronze_rows", LongType(), False, "Rows in the Bronze table"),
        Column("silver_accounted_rows", LongType(), False, "Bronze rows Silver accounted for"),
        Column("unprocessed_rows", LongType(), False, "Bronze rows Silver has not processed yet"),
        _metric("unprocessed_age_s", "Age of the oldest Bronze row Silver has not processed"),
        Column("bronze_gap_rows", LongType(), False, "kafka_committed - bronze_rows"),
        Column("silver_gap_rows", LongType(), False, "bronze_rows - silver_accounted_rows - unprocessed_rows"),
        Column("open_gaps", LongType(), False, "Open gaps in the trade ids (ops.trade_gaps)"),
        Column("missing_trades", LongType(), False, "Trades missing from the open gaps"),
    ),
    partitioning=(("measured_at", DayTransform),),
    doc="Operations: one row per exchange per monitoring run",
    properties={**TABLE_PROPERTIES, **APPENDED_OFTEN},  # an append a minute
)

ALERT_EVENTS = TableSpec(
    "ops",
    "alert_events",
    (
        Column("at", TimestamptzType(), True),
        Column("incident_id", StringType(), True),
        Column("exchange", StringType(), True),
        Column("metric", StringType(), True),
        Column("kind", StringType(), True, "opened, escalated or resolved"),
        Column("severity", StringType(), True, "warning, critical or resolved"),
        _metric("value", "The metric's value when the event fired"),
        _metric("threshold", "The threshold it crossed (for resolved: the warning threshold)"),
        Column("message", StringType(), True),
        Column("delivery", StringType(), False, "Per channel: sent, or queued with the error"),
    ),
    partitioning=(("at", MonthTransform),),
    doc="Operations: incident history (opened, escalated, resolved) of the monitoring thresholds",
)

MEDALLION_LEDGER = TableSpec(
    "ops",
    "medallion_ledger",
    (
        Column("layer", StringType(), True, "silver or gold"),
        Column("exchange", StringType(), True),
        Column("range_start", TimestamptzType(), True, "Bronze ingested_at, inclusive"),
        Column("range_end", TimestamptzType(), True, "Bronze ingested_at, exclusive"),
        Column("rerun", BooleanType(), True, "The layer had processed the range before"),
        Column("bronze_rows", LongType(), True, "Bronze rows in the range (silver)"),
        Column("items", LongType(), True, "Trades and messages in them (silver)"),
        Column("silver_new", LongType(), True),
        Column("duplicates", LongType(), True),
        Column("dead_letters", LongType(), True),
        Column("bars", LongType(), True, "Bars recomputed, all widths (gold)"),
        Column("finished_at", TimestamptzType(), True),
    ),
    partitioning=(("range_start", MonthTransform),),
    doc="Operations: every range of Bronze ingestion time each layer processed, with its accounting",
    properties={**TABLE_PROPERTIES, **APPENDED_OFTEN},  # an append per layer and exchange each hour
)

CONNECTION_EVENTS = TableSpec(
    *_split(CONNECTION_EVENTS_ID),
    (
        Column("exchange", StringType(), True),
        Column("event", StringType(), True, "connected or disconnected (k2.feeds.events)"),
        Column("event_time", TimestamptzType(), True, "When the feed connected or lost the connection, its clock, UTC"),
        Column("connection", IntegerType(), False, "The feed's connection number since it started"),
        Column("reason", StringType(), False, "Why a connection ended: idle_timeout, connection_closed, stopped, ..."),
        Column("detail", StringType(), False),
        Column("url", StringType(), False),
        *KAFKA_COORDINATES,
        Column("bronze_ingested_at", TimestamptzType(), True),
    ),
    partitioning=(("event_time", MonthTransform),),
    identifier_columns=("kafka_topic", "kafka_partition", "kafka_offset"),
    doc="Operations: the live feeds' connection events, routed here from Bronze by Silver",
)

TRADE_GAPS = TableSpec(
    *_split(TRADE_GAPS_ID),
    (
        Column("exchange", StringType(), True),
        Column("symbol", StringType(), True, "Normalised symbol, as Silver's"),
        Column("exchange_symbol", StringType(), True),
        Column("first_missing_id", LongType(), True),
        Column("last_missing_id", LongType(), True),
        Column("missing_count", LongType(), True),
        Column("after_time", TimestamptzType(), True, "Event time of the last trade before the gap"),
        Column("before_time", TimestamptzType(), True, "Event time of the first trade after the gap"),
        Column(
            "explained_by_disconnect",
            BooleanType(),
            True,
            "A feed outage (disconnected until connected again) overlaps [after_time, before_time]",
        ),
        Column("detected_at", TimestamptzType(), True),
        Column("closed_at", TimestamptzType(), False, "When a batch found the missing ids in Silver; null: open"),
    ),
    partitioning=(("exchange", IdentityTransform),),
    identifier_columns=("exchange", "symbol", "first_missing_id"),
    doc="Operations: gaps in the exchanges' sequential trade ids per symbol, found by the batch (k2.gaps)",
)

OPS_TABLES = (STREAM_METRICS, ALERT_EVENTS, MEDALLION_LEDGER, CONNECTION_EVENTS, TRADE_GAPS)


def all_tables(settings: Settings) -> list[TableSpec]:
    return [
        *(bronze_table(ex) for ex in settings.exchanges),
        SILVER_TRADES,
        DEAD_LETTER,
        *(gold_table(i) for i in GOLD_INTERVALS),
        *OPS_TABLES,
    ]


def ensure_tables(catalog: Catalog, specs: list[TableSpec]) -> dict[str, str]:
    """Create missing namespaces and tables; add the columns and set the properties a newer spec
    declares. name -> action."""
    from pyiceberg.exceptions import NamespaceAlreadyExistsError, NoSuchTableError

    actions: dict[str, str] = {}
    for namespace in sorted({s.namespace for s in specs}):
        with contextlib.suppress(NamespaceAlreadyExistsError):
            catalog.create_namespace(namespace)
    for spec in specs:
        schema = spec.schema()
        try:
            table = catalog.load_table(spec.identifier)
        except NoSuchTableError:
            props = {**spec.properties, "comment": spec.doc}
            catalog.create_table(spec.identifier, schema, partition_spec=spec.partition_spec(schema), properties=props)
            actions[spec.identifier] = "created"
        else:
            actions[spec.identifier] = _evolve(table, spec, schema)
        log.info("table.ensured", table=spec.identifier, action=actions[spec.identifier])
    return actions


def _same_type(a: IcebergType, b: IcebergType) -> bool:
    """Type equality ignoring nested field ids, which each catalog assigns on its own."""
    if isinstance(a, ListType) and isinstance(b, ListType):
        return _same_type(a.element_type, b.element_type)
    if isinstance(a, StructType) and isinstance(b, StructType):
        return [f.name for f in a.fields] == [f.name for f in b.fields] and all(
            _same_type(x.field_type, y.field_type) for x, y in zip(a.fields, b.fields, strict=True)
        )
    return a == b


def _evolve(table, spec: TableSpec, schema: Schema) -> str:
    have = {f.name: f for f in table.schema().fields}
    for wanted in schema.fields:
        current = have.get(wanted.name)
        if current is not None and not _same_type(current.field_type, wanted.field_type):
            raise K2Error(
                f"{spec.identifier}.{wanted.name} is {current.field_type} in the catalog but "
                f"{wanted.field_type} in K2's table definition",
                "migrate the table (Iceberg allows only widening type changes) or restore the definition.",
            )
    missing = [f.name for f in schema.fields if f.name not in have]
    if missing:
        with table.update_schema() as update:
            update.union_by_name(schema)
    # properties a newer spec declares (the format version is the table's metadata, not a property)
    changed = {k: v for k, v in spec.properties.items() if k != "format-version" and table.properties.get(k) != v}
    if changed:
        with table.transaction() as transaction:
            transaction.set_properties(changed)
    done = [f"added {', '.join(missing)}"] * bool(missing) + [f"set {', '.join(sorted(changed))}"] * bool(changed)
    return "evolved: " + "; ".join(done) if done else "exists"
