"""Kafka source records -> Bronze rows: renamed onto bronze.<exchange>_trades, nothing parsed or lost."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from k2.lake.tables import bronze_table
from k2.medallion.transforms.bronze import kafka_to_bronze
from tests.spark.frames import INGESTED_AT, TOPIC, UTC, at, kafka_records, utc

KAFKA_TS = at("2026-11-20T10:00:40.123456")
BRONZE_TYPES = [
    ("kafka_topic", "string"),
    ("kafka_partition", "int"),
    ("kafka_offset", "bigint"),
    ("kafka_timestamp", "timestamp"),
    ("kafka_timestamp_type", "int"),
    ("key", "binary"),
    ("value", "binary"),
    ("headers", "array<struct<key:string,value:binary>>"),
    ("ingested_at", "timestamp"),
]


def test_bronze_rows_have_the_bronze_table_columns(spark: SparkSession) -> None:
    bronze = kafka_to_bronze(kafka_records(spark, [b"x"], KAFKA_TS))
    assert [name for name, _ in BRONZE_TYPES] == [c.name for c in bronze_table("binance").columns]
    assert bronze.dtypes == BRONZE_TYPES


def test_every_record_field_is_kept_as_published(spark: SparkSession) -> None:
    payloads = [b'{"p":"1.0"}', b"", None, b"\xff\xfe"]
    rows = kafka_to_bronze(kafka_records(spark, payloads, KAFKA_TS, partition=3), F.lit(INGESTED_AT)).collect()
    assert [(r.kafka_offset, None if r.value is None else bytes(r.value)) for r in rows] == list(enumerate(payloads))
    first = rows[0]
    assert (first.kafka_topic, first.kafka_partition, first.kafka_timestamp_type, bytes(first.key)) == (
        TOPIC,
        3,
        0,
        b"k",
    )
    assert utc(first.kafka_timestamp) == KAFKA_TS and utc(first.ingested_at) == INGESTED_AT
    assert [(h.key, bytes(h.value)) for h in first.headers] == [("exchange", b"test")]


def test_ingestion_time_defaults_to_now(spark: SparkSession) -> None:
    before = dt.datetime.now(UTC).replace(microsecond=0)
    rows = kafka_to_bronze(kafka_records(spark, [b"a", b"b"], KAFKA_TS)).collect()
    after = dt.datetime.now(UTC)
    stamps = {utc(r.ingested_at) for r in rows}
    assert len(stamps) == 1 and before <= stamps.pop() <= after  # one instant per batch
