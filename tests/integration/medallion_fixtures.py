"""A lake of its own for batch tests (own catalog name, SQLite and warehouse, on the session's
SparkSession) and hand-made Bronze records of both exchanges."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

from k2.lake.catalog import load_catalog, spark_catalog_conf
from k2.lake.tables import all_tables, bronze_table, ensure_tables
from k2.settings import Settings
from tests.conftest import make_settings

UTC = dt.UTC


def own_lake(spark, home: Path, **overrides) -> Settings:
    """Settings whose catalog exists only for this test; registered in the running SparkSession."""
    settings = make_settings(home, catalog_name=f"k2t{uuid.uuid4().hex[:8]}", **overrides)
    for key, value in spark_catalog_conf(settings.lake).items():
        spark.conf.set(key, value)
    ensure_tables(load_catalog(settings.lake), all_tables(settings))
    return settings


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def naive(text: str) -> dt.datetime:
    """How pyspark hands a UTC timestamp back to Python: naive, in the process's local zone."""
    return at(text).astimezone().replace(tzinfo=None)


def ms(text: str) -> int:
    return int(at(text).timestamp() * 1000)


def binance(t: int, price: str, qty: str, when: str, *, buyer_maker: bool = False, symbol: str = "BTCUSDT") -> bytes:
    return json.dumps(
        {
            "stream": f"{symbol.lower()}@trade",
            "data": {
                "e": "trade",
                "E": ms(when) + 1,
                "s": symbol,
                "t": t,
                "p": price,
                "q": qty,
                "T": ms(when),
                "m": buyer_maker,
                "M": True,
            },
        },
        separators=(",", ":"),
    ).encode()


def kraken(*trades: tuple) -> bytes:
    """trades: (trade_id, price_json_text, qty_json_text, side, iso_timestamp, symbol)."""
    items = ",".join(
        f'{{"symbol":"{s}","side":"{side}","price":{p},"qty":{q},"ord_type":"market",'
        f'"trade_id":{t},"timestamp":"{ts}"}}'
        for t, p, q, side, ts, s in trades
    )
    return f'{{"channel":"trade","type":"update","data":[{items}]}}'.encode()


def write_bronze(spark, settings: Settings, exchange: str, records: list[tuple]) -> None:
    """records: (partition, offset, kafka timestamp, value[, ingested at]); by default a record is
    ingested at its Kafka timestamp."""
    from pyspark.sql import Row

    rows = [
        Row(
            kafka_topic=settings.topic_for(exchange),
            kafka_partition=p,
            kafka_offset=o,
            kafka_timestamp=at(ts),
            kafka_timestamp_type=0,
            key=b"k",
            value=value,
            headers=[Row(key="exchange", value=exchange.encode())],
            ingested_at=at(ingested[0] if ingested else ts),
        )
        for p, o, ts, value, *ingested in records
    ]
    table = f"{settings.lake.catalog_name}.{bronze_table(exchange).identifier}"
    spark.createDataFrame(rows, schema=spark.table(table).schema).writeTo(table).append()


def table_rows(spark, settings: Settings, identifier: str, drop: tuple[str, ...] = ()) -> list[tuple]:
    df = spark.table(f"{settings.lake.catalog_name}.{identifier}").drop(*drop)
    return sorted(tuple(r) for r in df.collect())
