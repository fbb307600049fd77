"""Kafka -> Bronze for one exchange, as a Structured Streaming query: read the topic -> map the
records onto the Bronze table (no parsing) -> append. The stream's process life (lock, status,
lease, restarts) is k2.streams.job's."""

from __future__ import annotations

from typing import TYPE_CHECKING

from k2.lake.names import bronze_id, qualified
from k2.settings import LakeSettings, Settings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery


def bronze_table_name(lake: LakeSettings, exchange: str) -> str:
    return qualified(lake.catalog_name, bronze_id(exchange))


def read_kafka(spark: SparkSession, settings: Settings, exchange: str) -> DataFrame:
    from k2.medallion.transforms.bronze import KAFKA_OPTIONS_DEFAULTS

    return (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka.bootstrap_servers)
        .option("subscribe", settings.topic_for(exchange))
        .options(**KAFKA_OPTIONS_DEFAULTS)
        .option("maxOffsetsPerTrigger", settings.streams.max_offsets_per_trigger)
        .option("failOnDataLoss", str(settings.streams.fail_on_data_loss).lower())
        .load()
    )


def start_bronze_query(spark: SparkSession, settings: Settings, exchange: str, checkpoint: str) -> StreamingQuery:
    from k2.medallion.transforms.bronze import kafka_to_bronze

    rows = kafka_to_bronze(read_kafka(spark, settings, exchange))
    if settings.streams.write_tasks:  # fewer tasks and files per micro-batch (no shuffle: coalesce)
        rows = rows.coalesce(settings.streams.write_tasks)
    return (
        rows.writeStream.format("iceberg")
        .outputMode("append")
        .queryName(f"bronze_{exchange}")
        .trigger(processingTime=f"{settings.streams.trigger_interval_s} seconds")
        .option("checkpointLocation", checkpoint)
        # each task writes its own rows: no per-batch shuffle to cluster rows by day (Iceberg's
        # default for partitioned tables), and rows of several days in one task need no sort
        .option("distribution-mode", "none")
        .option("fanout-enabled", "true")
        .toTable(bronze_table_name(settings.lake, exchange))
    )
