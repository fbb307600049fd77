"""What a Bronze stream's JVM leaves out of its log: warnings that repeat every few seconds on shared
cores, that no operator acts on, and whose substance K2 reports itself."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

QUIETED = (
    # every commit Iceberg retries, as a warning with a 70-line stack trace: the upkeep's commits
    # (k2.streams.upkeep) and the stream's own, one a second, meet now and then, and the one that
    # lost is retried on the new metadata and done. A commit that fails for good still
    # raises: the upkeep's is logged (bronze.upkeep_failed), the stream's fails its query, which the
    # supervisor restarts and reports
    "org.apache.iceberg.util.Tasks",
    # a micro-batch that took longer than its trigger (1 s), a few times a minute on shared cores: the
    # latency and lag it hints at are measured and alerted on (progress.json, k2_monitoring)
    "org.apache.spark.sql.execution.streaming.runtime.ProcessingTimeExecutor",
)


def quiet_stream_logs(spark: SparkSession) -> None:
    """Sets QUIETED's loggers to errors only, in the driver's JVM (where the stream commits)."""
    log4j = spark.sparkContext._jvm.org.apache.logging.log4j
    for name in QUIETED:
        log4j.core.config.Configurator.setLevel(name, log4j.Level.ERROR)
