"""One catalog, two engines: Spark (Iceberg JdbcCatalog) and pyiceberg (SqlCatalog) on one SQLite."""

from __future__ import annotations

import datetime as dt
import uuid

import pyarrow as pa
import pytest
from confluent_kafka import Producer
from pyiceberg.table import StaticTable

from k2.kafka.topics import ensure_topics
from k2.lake.catalog import load_catalog, sqlite_path
from k2.lake.tables import Column, TableSpec, all_tables, bronze_table, ensure_tables
from k2.settings import Settings

pytestmark = pytest.mark.integration


def test_tables_are_created_idempotently(catalog, settings: Settings) -> None:
    again = ensure_tables(catalog, all_tables(settings))
    assert set(again.values()) == {"exists"}
    assert {ns[0] for ns in catalog.list_namespaces()} >= {"bronze", "silver", "gold"}


def test_catalog_file_is_in_wal_mode(catalog, settings: Settings) -> None:
    import sqlite3

    with sqlite3.connect(sqlite_path(settings.lake)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_new_columns_in_a_definition_evolve_the_table(catalog) -> None:
    from pyiceberg.types import LongType, StringType

    name = f"evolve_{uuid.uuid4().hex[:6]}"
    v1 = TableSpec("silver", name, (Column("id", LongType(), True),))
    v2 = TableSpec("silver", name, (Column("id", LongType(), True), Column("note", StringType())))
    assert ensure_tables(catalog, [v1]) == {f"silver.{name}": "created"}
    assert ensure_tables(catalog, [v2]) == {f"silver.{name}": "evolved: added note"}
    assert [f.name for f in catalog.load_table(f"silver.{name}").schema().fields] == ["id", "note"]


def test_a_gold_table_of_an_older_release_gains_the_trade_id_and_completeness_columns(catalog) -> None:
    from dataclasses import replace

    from k2.lake.tables import gold_table

    now = replace(gold_table("1m"), name=f"ohlcv_1m_{uuid.uuid4().hex[:6]}")
    before = replace(now, columns=tuple(c for c in now.columns if c.name not in NEW_GOLD_COLUMNS))
    assert ensure_tables(catalog, [before]) == {now.identifier: "created"}
    assert ensure_tables(catalog, [now]) == {now.identifier: "evolved: added " + ", ".join(NEW_GOLD_COLUMNS)}
    assert [f.name for f in catalog.load_table(now.identifier).schema().fields] == [c.name for c in now.columns]


NEW_GOLD_COLUMNS = ("first_trade_id", "last_trade_id", "complete")


def test_a_table_of_an_older_release_gains_the_properties_its_definition_declares(catalog) -> None:
    from dataclasses import replace

    from k2.lake.appends import APPENDED_OFTEN
    from k2.lake.tables import STREAM_METRICS, TABLE_PROPERTIES

    now = replace(STREAM_METRICS, name=f"stream_metrics_{uuid.uuid4().hex[:6]}")
    before = replace(now, properties=dict(TABLE_PROPERTIES))
    assert ensure_tables(catalog, [before]) == {now.identifier: "created"}
    assert ensure_tables(catalog, [now]) == {now.identifier: "evolved: set " + ", ".join(sorted(APPENDED_OFTEN))}
    assert APPENDED_OFTEN.items() <= catalog.load_table(now.identifier).properties.items()
    assert ensure_tables(catalog, [now]) == {now.identifier: "exists"}


def test_spark_writes_pyiceberg_reads_and_back(spark, settings: Settings) -> None:
    name = f"silver.interop_{uuid.uuid4().hex[:6]}"
    spark.sql(f"CREATE TABLE {name} (id BIGINT, price DECIMAL(38,18), note STRING) USING iceberg")
    spark.sql(f"INSERT INTO {name} VALUES (1, 101.5, 'spark'), (2, 102.25, 'spark')")

    table = load_catalog(settings.lake).load_table(name)  # a fresh pyiceberg client on the same catalog
    rows = table.scan().to_arrow().sort_by("id").to_pylist()
    assert [(r["id"], str(r["price"]), r["note"]) for r in rows] == [
        (1, "101.500000000000000000", "spark"),
        (2, "102.250000000000000000", "spark"),
    ]

    table.append(
        pa.Table.from_pylist([{"id": 3, "price": None, "note": "pyiceberg"}], schema=table.schema().as_arrow())
    )
    spark.sql(f"REFRESH TABLE {name}")
    seen = {(r.id, r.note) for r in spark.table(name).collect()}
    assert seen == {(1, "spark"), (2, "spark"), (3, "pyiceberg")}


def test_kafka_records_land_in_bronze_and_an_independent_reader_sees_them(
    spark, kafka_broker, catalog, settings: Settings
) -> None:
    """Spark reads the exchange topic (batch) into the Bronze table; the table's metadata file
    alone is enough for a reader that never talks to the catalog database."""
    ensure_topics(settings)
    topic = settings.topic_for("binance")
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers, "enable.idempotence": True})
    payloads = [b'{"stream":"btcusdt@trade","data":{"t":%d}}' % i for i in range(50)]
    for p in payloads:
        producer.produce(topic, key=b"BTCUSDT", value=p, headers={"exchange": b"binance"})
    assert producer.flush(30) == 0

    from pyspark.sql import functions as F

    raw = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka.bootstrap_servers)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .option("includeHeaders", "true")
        .load()
    )
    bronze = raw.select(
        F.col("topic").alias("kafka_topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        F.col("timestampType").alias("kafka_timestamp_type"),
        "key",
        "value",
        "headers",
        F.current_timestamp().alias("ingested_at"),
    )
    bronze.writeTo(bronze_table("binance").identifier).append()

    table = load_catalog(settings.lake).load_table(bronze_table("binance").identifier)
    static = StaticTable.from_metadata(table.metadata_location)
    got = static.scan().to_arrow()
    assert sorted(got.column("value").to_pylist()) == sorted(payloads)
    assert got.column("headers").to_pylist()[0] == [{"key": "exchange", "value": b"binance"}]
    assert all(
        ts.tzinfo is not None and ts < dt.datetime.now(dt.UTC) for ts in got.column("kafka_timestamp").to_pylist()
    )
    assert len(
        {(r["kafka_partition"], r["kafka_offset"]) for r in got.select(["kafka_partition", "kafka_offset"]).to_pylist()}
    ) == len(payloads)
