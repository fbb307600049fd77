"""Bronze rows -> connection events (``ops.connection_events``), the Spark form of
``k2.feeds.events.connection_event``: a row is an event when its headers mark it so and its payload
reads as one; any other row (an unreadable event included) takes the trade path, where a payload
that is no trade becomes a dead letter."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from k2.feeds.events import CONNECTION_KIND, EVENTS, INT32, KIND_HEADER, MAX_AT_US, OPTIONAL_FIELDS


def marked(headers: str = "headers") -> Column:
    """The record's headers say it is a connection event."""
    return F.coalesce(
        F.exists(F.col(headers), lambda h: (h["key"] == KIND_HEADER) & (h["value"] == F.lit(CONNECTION_KIND))),
        F.lit(False),
    )


def _typed(doc: Column, key: str, kind: type) -> Column:
    """The payload's ``key`` when its JSON type is ``kind`` (int: a JSON integer within int64), else null."""
    value = doc[key]
    if kind is int:
        return F.when(F.schema_of_variant(value) == "BIGINT", F.try_variant_get(value, "$", "bigint"))
    return F.when(F.schema_of_variant(value) == "STRING", F.try_variant_get(value, "$", "string"))


def event_fields(bronze: DataFrame) -> DataFrame:
    """Adds ``_event`` (the payload's fields, typed as k2.feeds.events.parse_event reads them) and
    ``is_event`` (marked and readable: ``event`` one of EVENTS, ``at_us`` an integer in range)."""
    keys = ("event", "at_us", *OPTIONAL_FIELDS)
    doc = F.from_json(F.col("value").cast("string"), ", ".join(f"{k} variant" for k in keys))
    df = bronze.withColumn("_doc", F.when(marked(), doc))
    connection = _typed(F.col("_doc"), "connection", int)
    fields = [
        _typed(F.col("_doc"), "event", str).alias("event"),
        _typed(F.col("_doc"), "at_us", int).alias("at_us"),
        F.when(connection.between(*INT32), connection.cast("int")).alias("connection"),
        *(_typed(F.col("_doc"), k, t).alias(k) for k, t in OPTIONAL_FIELDS.items() if t is str),
    ]
    df = df.withColumn("_event", F.struct(*fields)).drop("_doc")
    ok = F.col("_event.event").isin(*EVENTS) & F.col("_event.at_us").between(0, MAX_AT_US)
    return df.withColumn("is_event", F.coalesce(marked() & ok, F.lit(False)))


def to_connection_events(bronze_events: DataFrame, exchange: str) -> DataFrame:
    """Rows ``event_fields`` marked as events -> ``ops.connection_events`` rows."""
    e = F.col("_event")
    return bronze_events.select(
        F.lit(exchange).alias("exchange"),
        e["event"].alias("event"),
        F.timestamp_micros(e["at_us"]).alias("event_time"),
        e["connection"].alias("connection"),
        e["reason"].alias("reason"),
        e["detail"].alias("detail"),
        e["url"].alias("url"),
        "kafka_topic",
        "kafka_partition",
        "kafka_offset",
        "kafka_timestamp",
        F.col("ingested_at").alias("bronze_ingested_at"),
    )
