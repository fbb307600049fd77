"""Spark building blocks shared by the exchanges' ``parse_bronze`` implementations.

Imported only inside ``parse_bronze`` (pyspark is heavy and feed processes never need it).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

CANDIDATE_COLUMNS = (
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
    "kafka_timestamp",
    "ingested_at",
    "value",
    "item_index",
    "exchange_symbol",
    "trade_id",
    "event_time",
    "price_text",
    "quantity_text",
    "taker_side",
    "parse_error",
    "parse_detail",
)


def payload_text(bronze: DataFrame) -> DataFrame:
    """Adds ``payload`` (the value as UTF-8 text) and ``payload_error`` for values that are empty or
    not UTF-8; exchanges add their own structural checks (see ``unparsed_reason``)."""
    text = F.col("value").cast("string")
    error = F.when(F.col("value").isNull() | (F.length("value") == 0), F.lit("empty_payload")).when(
        ~F.is_valid_utf8(text), F.lit("not_utf8")
    )
    return bronze.withColumn("payload", text).withColumn("payload_error", error)


def unparsed_reason() -> Column:
    """Why a payload did not parse into the exchange's message shape: not JSON at all, or JSON of
    another kind. Meant for rows whose parse failed only, so valid rows are parsed once."""
    return F.when(F.get_json_object("payload", "$").isNull(), F.lit("malformed_json")).otherwise(F.lit("not_a_trade"))


def candidates(
    df: DataFrame,
    *,
    item_index: Column,
    exchange_symbol: Column,
    trade_id: Column,
    event_time: Column,
    price_text: Column,
    quantity_text: Column,
    taker_side: Column,
    parse_error: Column,
) -> DataFrame:
    """Project onto CANDIDATE_COLUMNS; a rejected message keeps only its coordinates and raw value."""
    ok = parse_error.isNull()
    detail = (
        F.when(parse_error == "empty_payload", F.lit("the Kafka record has no value"))
        .when(parse_error == "not_utf8", F.lit("the payload is not valid UTF-8"))
        .when(parse_error == "malformed_json", F.lit("the payload is not valid JSON (truncated or garbled)"))
        .when(parse_error.isNotNull(), F.concat(F.lit("not a trade message: "), F.substring("payload", 1, 200)))
    )
    return df.select(
        "kafka_topic",
        "kafka_partition",
        "kafka_offset",
        "kafka_timestamp",
        "ingested_at",
        "value",
        F.when(ok, item_index).otherwise(F.lit(-1)).cast("int").alias("item_index"),
        F.when(ok, exchange_symbol).alias("exchange_symbol"),
        F.when(ok, trade_id.cast("string")).alias("trade_id"),
        F.when(ok, event_time).alias("event_time"),
        F.when(ok, price_text).alias("price_text"),
        F.when(ok, quantity_text).alias("quantity_text"),
        F.when(ok, taker_side).alias("taker_side"),
        parse_error.alias("parse_error"),
        detail.alias("parse_detail"),
    )
