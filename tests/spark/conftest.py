"""The Spark unit tier: pure DataFrame -> DataFrame transforms on a bare local session (no jars, no
catalog, no Kafka), on in-memory frames. Runs in seconds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="package")
def spark() -> Iterator:
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:  # an integration session already runs in this process: same semantics
        yield active
        return
    session = (
        SparkSession.builder.master("local[1]")
        .appName("k2-spark-unit")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
