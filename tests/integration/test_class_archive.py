"""The class-data sharing archive `k2 jars` builds is the one K2's Spark JVMs map: the JVM accepted
it (a JDK, class path or jar that differs from the training run's makes the JVM run without it).
The Spark Connect server's is checked in test_spark_connect.py."""

from __future__ import annotations

import pytest

from k2.class_archive import archive_path
from tests.helpers import maps_file

pytestmark = pytest.mark.integration


def test_the_tests_spark_jvm_maps_the_archive(spark, settings) -> None:
    archive = archive_path(settings)
    assert archive.is_file(), f"{archive}: `k2 jars` builds it"
    spark_submit = spark.sparkContext._gateway.proc  # pyspark's launch of the JVM
    assert maps_file(spark_submit.pid, archive), f"the tests' Spark JVM runs without {archive}"
