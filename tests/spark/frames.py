"""In-memory frames of the shapes the transforms read: Kafka source records, Bronze rows, Silver
candidates and Silver trades. No catalog: schemas are written out here, and the tests check them
against the library's own column lists."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING

from k2.exchanges.spark import CANDIDATE_COLUMNS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

UTC = dt.UTC
MONEY_TYPE = "decimal(38,18)"

KAFKA_SCHEMA = (
    "key binary, value binary, topic string, partition int, offset bigint, timestamp timestamp, "
    "timestampType int, headers array<struct<key:string,value:binary>>"
)
CANDIDATE_TYPES = {
    "kafka_topic": "string",
    "kafka_partition": "int",
    "kafka_offset": "bigint",
    "kafka_timestamp": "timestamp",
    "ingested_at": "timestamp",
    "value": "binary",
    "item_index": "int",
    "exchange_symbol": "string",
    "trade_id": "string",
    "event_time": "timestamp",
    "price_text": "string",
    "quantity_text": "string",
    "taker_side": "string",
    "parse_error": "string",
    "parse_detail": "string",
}
CANDIDATE_SCHEMA = ", ".join(f"{name} {CANDIDATE_TYPES[name]}" for name in CANDIDATE_COLUMNS)
TRADE_SCHEMA = (
    f"exchange string, symbol string, trade_id string, event_time timestamp, price {MONEY_TYPE}, "
    f"quantity {MONEY_TYPE}, quote_amount {MONEY_TYPE}, taker_side string"
)
TOPIC = "k2.test.raw"
INGESTED_AT = dt.datetime(2026, 11, 20, 10, 1, 0, tzinfo=UTC)


def at(text: str) -> dt.datetime:
    """An aware UTC datetime from ISO text without a zone."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def utc(value: dt.datetime) -> dt.datetime:
    """A timestamp as Spark hands it back to Python (naive, in the process's local zone), made aware."""
    return value.astimezone(UTC)


def micros(value: dt.datetime) -> int:
    moment = value if value.tzinfo else utc(value)
    delta = moment - dt.datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def kafka_records(
    spark: SparkSession, payloads: Sequence[bytes | None], kafka_timestamp: dt.datetime, *, partition: int = 0
) -> DataFrame:
    """What the Kafka source yields for these values: offsets 0, 1, ... in one partition."""
    rows = [
        (b"k", value, TOPIC, partition, offset, kafka_timestamp, 0, [("exchange", b"test")])
        for offset, value in enumerate(payloads)
    ]
    return spark.createDataFrame(rows, KAFKA_SCHEMA)


def bronze_rows(spark: SparkSession, payloads: Sequence[bytes | None], kafka_timestamp: dt.datetime) -> DataFrame:
    """Bronze rows of these payloads, made by the Bronze transform itself."""
    from pyspark.sql import functions as F

    from k2.medallion.transforms.bronze import kafka_to_bronze

    return kafka_to_bronze(kafka_records(spark, payloads, kafka_timestamp), F.lit(INGESTED_AT))


def candidate(
    offset: int,
    *,
    kafka_timestamp: dt.datetime,
    item_index: int = 0,
    exchange_symbol: str | None = "BTCUSDT",
    trade_id: str | None = "1",
    event_after_s: float | None = -35.0,
    price_text: str | None = "65000.10",
    quantity_text: str | None = "0.00100000",
    taker_side: str | None = "buy",
    parse_error: str | None = None,
    parse_detail: str | None = None,
    value: bytes | None = b"{}",
    partition: int = 0,
) -> tuple:
    """One row of ``CANDIDATE_SCHEMA``: a valid trade unless told otherwise. The event time is
    ``event_after_s`` seconds after the Kafka timestamp (None: no event time)."""
    when = None if event_after_s is None else kafka_timestamp + dt.timedelta(seconds=event_after_s)
    return (
        TOPIC,
        partition,
        offset,
        kafka_timestamp,
        INGESTED_AT,
        value,
        item_index,
        exchange_symbol,
        trade_id,
        when,
        price_text,
        quantity_text,
        taker_side,
        parse_error,
        parse_detail,
    )


def trade(
    trade_id: str,
    when: str,
    price: str,
    quantity: str,
    side: str,
    *,
    symbol: str = "BTC-USDT",
    exchange: str = "binance",
) -> tuple:
    """One row of ``TRADE_SCHEMA`` (a Silver trade), its quote amount exact."""
    p, q = Decimal(price), Decimal(quantity)
    return (exchange, symbol, trade_id, at(when), p, q, p * q, side)
