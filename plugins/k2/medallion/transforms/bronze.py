"""Kafka records -> Bronze rows: rename, keep everything, stamp the ingestion time. No parsing:
Bronze holds each exchange's payload exactly as it was published."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

KAFKA_OPTIONS_DEFAULTS = {"startingOffsets": "earliest", "includeHeaders": "true"}


def kafka_to_bronze(records: DataFrame, ingested_at: Column | None = None) -> DataFrame:
    """Map the Kafka source schema onto ``bronze.<exchange>_trades`` (k2.lake.tables.bronze_table)."""
    return records.select(
        F.col("topic").alias("kafka_topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        F.col("timestampType").alias("kafka_timestamp_type"),
        F.col("key"),
        F.col("value"),
        F.col("headers"),
        (ingested_at if ingested_at is not None else F.current_timestamp()).alias("ingested_at"),
    )
